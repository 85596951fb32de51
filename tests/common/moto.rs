//! moto's S3 server on loopback for the tests that need a real S3 wire protocol:
//! started per test on a free port of 127.0.0.1 and killed when the test ends.
//!
//! Without moto each server test prints `skipped: <why>` and passes; with
//! `READTHROUGH_REQUIRE_MOTO=1` in the environment it fails instead, so CI can insist.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use readthrough::s3_store_with;

/// Set (to anything) to make a missing or broken moto a failure instead of a skip.
pub const REQUIRE: &str = "READTHROUGH_REQUIRE_MOTO";
pub const BUCKET: &str = "readthrough-test";
/// How long moto may take to answer after it is spawned (it imports a lot of Python).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Fresh ports tried per command, in case another process takes the one picked.
pub const PORT_ATTEMPTS: usize = 3;

/// A moto server on 127.0.0.1, killed on drop. Its request log (werkzeug's access
/// lines on stderr) goes to a temporary file that tests read to count requests.
pub struct Moto {
    pub child: Child,
    pub port: u16,
    pub log: tempfile::NamedTempFile,
    pub started_in: Duration,
}

impl Moto {
    /// Starts moto on a free port and creates [`BUCKET`], or says why it could not.
    pub fn start() -> Result<Moto, String> {
        let candidates: [(&str, &[&str]); 2] =
            [("moto_server", &[]), ("python3", &["-m", "moto.server"])];
        let mut failures = Vec::new();
        for (program, args) in candidates {
            for _ in 0..PORT_ATTEMPTS {
                match Moto::spawn(program, args) {
                    Ok(moto) => return Ok(moto),
                    Err(Attempt::NotFound(why)) => {
                        failures.push(why);
                        break;
                    }
                    Err(Attempt::Exited(why)) if why.contains("ddress already in use") => {
                        failures.push(why);
                    }
                    Err(Attempt::Exited(why) | Attempt::Broken(why)) => {
                        failures.push(why);
                        break;
                    }
                }
            }
        }
        Err(format!(
            "could not start moto (pip install 'moto[server]'): {}",
            failures.join("; ")
        ))
    }

    pub fn spawn(program: &str, args: &[&str]) -> Result<Moto, Attempt> {
        let broken = |what: &str, e: io::Error| Attempt::Broken(format!("{what}: {e}"));
        let port = free_port().map_err(|e| broken("no free port", e))?;
        let log = tempfile::NamedTempFile::new().map_err(|e| broken("no log file", e))?;
        let stderr = log.reopen().map_err(|e| broken("no log file", e))?;
        let port_arg = port.to_string();
        let mut argv = args.to_vec();
        argv.extend(["-H", "127.0.0.1", "-p", &port_arg]);
        let shown = format!("`{program} {}`", argv.join(" "));
        let began = Instant::now();
        let child = Command::new(program)
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Attempt::NotFound(format!("{shown}: {e}")));
            }
            Err(e) => return Err(broken(&shown, e)),
        };
        let mut moto = Moto {
            child,
            port,
            log,
            started_in: Duration::ZERO,
        };
        loop {
            if let Some(status) = moto.exited() {
                return Err(Attempt::Exited(format!(
                    "{shown} exited with {status}: {}",
                    moto.log_tail()
                )));
            }
            // Ready once it answers, and it was this child that answered: it logs
            // each request before it sends the answer. (If another program took the
            // port, the child soon exits with "Address already in use".)
            if http(port, "GET", "/moto-api/").is_ok() && moto.requests("GET", "/moto-api/") > 0 {
                break;
            }
            if began.elapsed() > START_TIMEOUT {
                return Err(Attempt::Broken(format!(
                    "{shown} did not answer within {START_TIMEOUT:?}: {}",
                    moto.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        moto.started_in = began.elapsed();
        // An unsigned `PUT /bucket` creates the bucket: moto checks no signatures by
        // default.
        match http(port, "PUT", &format!("/{BUCKET}")) {
            Ok(200) => Ok(moto),
            answer => Err(Attempt::Broken(format!(
                "{shown}: creating bucket {BUCKET} answered {answer:?}: {}",
                moto.log_tail()
            ))),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// How many `method` requests for `path` (`/bucket/key`) moto has logged.
    pub fn requests(&self, method: &str, path: &str) -> usize {
        let needle = format!("\"{method} {path} HTTP/");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// As [`requests`](Self::requests), once the count has stopped changing: moto
    /// logs a request when it starts its answer, from another thread.
    pub async fn settled_requests(&self, method: &str, path: &str) -> usize {
        let mut last = self.requests(method, path);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.requests(method, path);
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// A store for [`BUCKET`] on this server, made by the crate's `s3_store`.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        let builder = AmazonS3Builder::new()
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_region("us-east-1");
        s3_store_with(builder, BUCKET, Some(&self.endpoint()))
            .expect("s3_store_with accepts the moto endpoint")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why one attempt to start moto failed.
pub enum Attempt {
    /// The command does not exist: try the next one.
    NotFound(String),
    /// The server exited before answering (maybe its port was taken: try another).
    Exited(String),
    /// Anything else.
    Broken(String),
}

/// A port that was free a moment ago: bound on 127.0.0.1 and released.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One HTTP/1.1 request with an empty body on its own connection; the status code.
pub fn http(port: u16, method: &str, path: &str) -> io::Result<u16> {
    request(port, method, path, &[], b"").map(|(status, _)| status)
}

/// One HTTP/1.1 request with `headers` and `body` on its own connection; the status
/// code and the answer's body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP answer"))?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_owned()))
}

/// The moto server for one test, or `None` after printing why the test is skipped.
pub fn moto() -> Option<Moto> {
    match Moto::start() {
        Ok(moto) => {
            eprintln!("moto answered {:?} after it was spawned", moto.started_in);
            Some(moto)
        }
        Err(why) if std::env::var_os(REQUIRE).is_some() => panic!("{REQUIRE} is set: {why}"),
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}
