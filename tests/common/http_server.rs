// A small HTTP/1.1 origin for integration tests, written on plain tokio.
//
// [`Server::start`] binds `127.0.0.1:0` and serves routes registered at runtime
// with [`Server::route`]. Each route's [`Behaviour`] decides the answer: body and
// validators, byte ranges, failures, redirects, and slow, cut or stalled
// transfers. Every request is recorded ([`Server::requests`], [`Server::count`]).
// Connections are keep-alive unless the client sends `Connection: close`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How a route answers. Build with [`Behaviour::body`] and the builder setters,
/// which are named after the fields.
#[allow(dead_code)]
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// The full object.
    pub body: Bytes,
    /// Sent as `ETag`; may be weak (`W/"..."`).
    pub etag: Option<String>,
    /// Sent as `Last-Modified`.
    pub last_modified: Option<String>,
    /// Sent as `Content-Type`.
    pub content_type: Option<String>,
    /// Status of a normal answer (default 200). Not 2xx: a short text body instead.
    pub status: u16,
    /// The first `fail_first` requests since the route was (re)registered get
    /// `fail_status` (default 503) with a short text body.
    pub fail_first: usize,
    pub fail_status: u16,
    /// Answer `302 Found` with this `Location`.
    pub redirect_to: Option<String>,
    /// Send the body in pieces of `chunk` bytes (0: one piece), `delay` between pieces.
    pub chunk: usize,
    pub delay: Duration,
    /// Close the connection after this many body bytes, for the first `drop_times`
    /// (default 1) responses whose body is longer than that.
    pub drop_after: Option<usize>,
    pub drop_times: usize,
    /// Stop after this many body bytes and hold the connection open for an hour,
    /// for the first `stall_times` (default: all) responses whose body is longer.
    pub stall_after: Option<usize>,
    pub stall_times: usize,
    /// Announce the full length but send `short_by` bytes fewer, then close.
    pub short_by: usize,
    /// Honour `Range` (single `bytes=N-`, `N-M`, `-S`) and `If-Range`, and send
    /// `Accept-Ranges: bytes` (default true). When false, `Range` is ignored.
    pub ranges: bool,
    /// Frame the body with `Transfer-Encoding: chunked` instead of `Content-Length`.
    pub chunked: bool,
    /// Answer `304` when `If-None-Match` matches the ETag (weak comparison) or, with
    /// no `If-None-Match`, `If-Modified-Since` equals `last_modified` (default true).
    pub if_none_match: bool,
    /// Once a response has been cut by `drop_after`, the route answers with this
    /// behaviour instead: the object changed while the client was reading it.
    pub then: Option<Box<Behaviour>>,
    /// Send this many body bytes, then hold the rest until the [`Gate`] opens.
    pub hold_at: Option<(usize, Gate)>,
}

/// Where responses wait: each one held at it is counted, and all go on once it opens.
#[derive(Clone, Debug)]
pub struct Gate(Arc<GateState>);

#[derive(Debug)]
struct GateState {
    held: tokio::sync::watch::Sender<usize>,
    open: tokio::sync::Semaphore,
}

#[allow(dead_code)]
impl Gate {
    pub fn new() -> Gate {
        Gate(Arc::new(GateState {
            held: tokio::sync::watch::Sender::new(0),
            open: tokio::sync::Semaphore::new(0),
        }))
    }

    /// Waits until `n` responses have reached the gate.
    pub async fn reached(&self, n: usize) {
        let mut held = self.0.held.subscribe();
        let _ = held.wait_for(|&count| count >= n).await;
    }

    /// Lets every held response, and every later one, go on.
    pub fn open(&self) {
        self.0
            .open
            .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }

    async fn pass(&self) {
        self.0.held.send_modify(|count| *count += 1);
        let _ = self.0.open.acquire().await;
    }
}

/// Generates builder setters: `Option<String>` fields take `impl Into<String>`,
/// `Option<usize>` fields take `usize`, others take the field type.
macro_rules! setters {
    (@one $name:ident string) => {
        pub fn $name(mut self, value: impl Into<String>) -> Self {
            self.$name = Some(value.into());
            self
        }
    };
    (@one $name:ident some $ty:ty) => {
        pub fn $name(mut self, value: $ty) -> Self {
            self.$name = Some(value);
            self
        }
    };
    (@one $name:ident plain $ty:ty) => {
        pub fn $name(mut self, value: $ty) -> Self {
            self.$name = value;
            self
        }
    };
    ($($name:ident: $kind:tt $($ty:ty)?;)*) => { $(setters!(@one $name $kind $($ty)?);)* };
}

#[allow(dead_code)]
impl Behaviour {
    /// A `200 OK` answer with `body`, range support and no validators.
    pub fn body(body: impl Into<Bytes>) -> Self {
        Behaviour {
            body: body.into(),
            etag: None,
            last_modified: None,
            content_type: None,
            status: 200,
            fail_first: 0,
            fail_status: 503,
            redirect_to: None,
            chunk: 0,
            delay: Duration::ZERO,
            drop_after: None,
            drop_times: 1,
            stall_after: None,
            stall_times: usize::MAX,
            short_by: 0,
            ranges: true,
            chunked: false,
            if_none_match: true,
            then: None,
            hold_at: None,
        }
    }

    /// Sends `n` body bytes, then holds the rest until `gate` opens.
    pub fn hold_at(mut self, n: usize, gate: &Gate) -> Self {
        self.hold_at = Some((n, gate.clone()));
        self
    }

    /// After the first cut by `drop_after`, answer as `next` (see [`Behaviour::then`]).
    pub fn then(mut self, next: Behaviour) -> Self {
        self.then = Some(Box::new(next));
        self
    }

    setters! {
        etag: string; last_modified: string; content_type: string; redirect_to: string;
        drop_after: some usize; stall_after: some usize;
        status: plain u16; fail_first: plain usize; fail_status: plain u16;
        chunk: plain usize; delay: plain Duration; drop_times: plain usize;
        stall_times: plain usize; short_by: plain usize; ranges: plain bool;
        chunked: plain bool; if_none_match: plain bool;
    }
}

/// One recorded request. Header names are lowercased; `path` excludes the query.
#[allow(dead_code)]
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

#[allow(dead_code)]
impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A running test server; dropping it stops it and aborts open connections.
pub struct Server {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    log: Vec<Request>,
}

struct Route {
    behaviour: Behaviour,
    hits: usize,
    drops: usize,
    stalls: usize,
}

#[allow(dead_code)]
impl Server {
    /// Binds `127.0.0.1:0` and starts accepting connections.
    pub async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test server");
        let addr = listener.local_addr().expect("test server address");
        let state = Arc::new(Mutex::new(State::default()));
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        Server { addr, state, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/path` (a missing leading `/` is added).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, normalize(path))
    }

    /// Serves `path` with `behaviour`, replacing (and resetting the fail, drop and
    /// stall counters of) any earlier behaviour. The request log is kept.
    pub fn route(&self, path: &str, behaviour: Behaviour) {
        let route = Route {
            behaviour,
            hits: 0,
            drops: 0,
            stalls: 0,
        };
        self.state().routes.insert(normalize(path), route);
    }

    /// Every request received for `path` so far, oldest first.
    pub fn requests(&self, path: &str) -> Vec<Request> {
        let path = normalize(path);
        let state = self.state();
        state
            .log
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// How many requests were received for `path`.
    pub fn count(&self, path: &str) -> usize {
        self.requests(path).len()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn normalize(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>) {
    // Connection tasks live in this set, so aborting this task aborts them too.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(serve_connection(stream, state.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<Mutex<State>>) {
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    while let Some((request, keep_alive)) = read_request(&mut reader).await {
        let reply = plan(&state, request);
        match send(&mut writer, reply, keep_alive).await {
            Ok(true) => continue,
            _ => return, // dropping the halves closes the connection
        }
    }
}

/// Reads one request head (and discards any `Content-Length` body). Returns the
/// request and whether the connection stays open, or `None` at EOF / on junk.
async fn read_request(reader: &mut BufReader<OwnedReadHalf>) -> Option<(Request, bool)> {
    let mut line = Vec::new();
    let mut lines = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        match (text.is_empty(), lines.is_empty()) {
            (true, true) => continue, // tolerate blank lines before a request
            (true, false) => break,
            (false, _) => lines.push(text),
        }
    }
    let mut parts = lines[0].split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?);
    let http10 = parts.next() == Some("HTTP/1.0");
    let path = target.split('?').next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    for header in &lines[1..] {
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let request = Request {
        method,
        path,
        headers,
    };
    let body_len = request
        .header("content-length")
        .and_then(|v| v.parse().ok());
    let mut body = (&mut *reader).take(body_len.unwrap_or(0));
    tokio::io::copy(&mut body, &mut tokio::io::sink())
        .await
        .ok()?;
    let connection = request
        .header("connection")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let keep_alive = match http10 {
        true => connection.contains("keep-alive"),
        false => !connection.contains("close"),
    };
    Some((request, keep_alive))
}

/// What to send for one request; decided under the state lock, sent without it.
#[derive(Default)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    /// `None`: no body and no framing headers (304).
    body: Option<Bytes>,
    head: bool,
    chunked: bool,
    chunk: usize,
    delay: Duration,
    /// Stop after this many body bytes, then close or stall.
    cut: Option<(usize, Cut)>,
    /// Pause after this many body bytes until the gate opens.
    hold: Option<(usize, Gate)>,
}

#[derive(Clone, Copy, Debug)]
enum Cut {
    Close,
    Stall,
}

impl Reply {
    fn text(status: u16, head: bool) -> Reply {
        let body = Bytes::from(format!("{status} {}\n", reason(status)));
        let headers = vec![("Content-Type", "text/plain".to_string())];
        let body = Some(body);
        Reply {
            status,
            headers,
            body,
            head,
            ..Reply::default()
        }
    }
}

/// Records `request` and decides the reply from its route's behaviour.
fn plan(state: &Mutex<State>, request: Request) -> Reply {
    let mut state = state.lock().unwrap();
    state.log.push(request.clone());
    let head = request.method.eq_ignore_ascii_case("HEAD");
    let Some(route) = state.routes.get_mut(&request.path) else {
        return Reply::text(404, head);
    };
    route.hits += 1;
    let b = &route.behaviour;
    if route.hits <= b.fail_first {
        return Reply::text(b.fail_status, head);
    }
    if let Some(to) = &b.redirect_to {
        let mut reply = Reply::text(302, head);
        reply.headers.push(("Location", to.clone()));
        return reply;
    }
    if !(200..300).contains(&b.status) {
        return Reply::text(b.status, head);
    }
    let mut headers = Vec::new();
    let optional = [("ETag", &b.etag), ("Last-Modified", &b.last_modified)];
    for (name, value) in optional
        .into_iter()
        .chain([("Content-Type", &b.content_type)])
    {
        headers.extend(value.clone().map(|v| (name, v)));
    }
    if b.ranges {
        headers.push(("Accept-Ranges", "bytes".to_string()));
    }
    let (mut status, mut body, total) = (b.status, b.body.clone(), b.body.len());
    if b.if_none_match && not_modified(b, &request) {
        return Reply {
            status: 304,
            headers,
            head,
            ..Reply::default()
        };
    }
    if b.ranges
        && status == 200
        && if_range_holds(b, &request)
        && let Some(range) = request.header("range").and_then(|r| parse_range(r, total))
    {
        let Ok((first, end)) = range else {
            let mut reply = Reply::text(416, head);
            reply
                .headers
                .push(("Content-Range", format!("bytes */{total}")));
            return reply;
        };
        status = 206;
        headers.push((
            "Content-Range",
            format!("bytes {first}-{}/{total}", end - 1),
        ));
        body = body.slice(first..end);
    }
    let len = body.len();
    let mut cuts = vec![];
    if b.short_by > 0 && !head {
        cuts.push((len.saturating_sub(b.short_by), Cut::Close));
    }
    if let Some(n) = b
        .drop_after
        .filter(|&n| n < len && route.drops < b.drop_times && !head)
    {
        route.drops += 1;
        cuts.push((n, Cut::Close));
    }
    let next = b.then.clone().filter(|_| route.drops > 0);
    if let Some(n) = b
        .stall_after
        .filter(|&n| n < len && route.stalls < b.stall_times && !head)
    {
        route.stalls += 1;
        cuts.push((n, Cut::Stall));
    }
    let cut = cuts.into_iter().min_by_key(|&(n, _)| n);
    let hold = b.hold_at.clone().filter(|&(n, _)| n < len && !head);
    let (chunked, chunk, delay, body) = (b.chunked, b.chunk, b.delay, Some(body));
    if let Some(next) = next {
        *route = Route {
            behaviour: *next,
            hits: 0,
            drops: 0,
            stalls: 0,
        };
    }
    Reply {
        status,
        headers,
        body,
        head,
        chunked,
        chunk,
        delay,
        cut,
        hold,
    }
}

/// `If-None-Match` (weak comparison, `*` matches) or else exact `If-Modified-Since`.
fn not_modified(b: &Behaviour, request: &Request) -> bool {
    let weak = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    if let Some(tags) = request.header("if-none-match") {
        let Some(etag) = &b.etag else { return false };
        return tags
            .split(',')
            .any(|t| t.trim() == "*" || weak(t) == weak(etag));
    }
    request
        .header("if-modified-since")
        .is_some_and(|v| b.last_modified.as_deref() == Some(v))
}

/// Whether a `Range` may be honoured: no `If-Range`, or it equals the current
/// strong ETag or `Last-Modified` (weak ETags never match, RFC 9110 §13.1.5).
fn if_range_holds(b: &Behaviour, request: &Request) -> bool {
    request.header("if-range").is_none_or(|v| {
        (!v.starts_with("W/") && b.etag.as_deref() == Some(v))
            || b.last_modified.as_deref() == Some(v)
    })
}

/// Parses a single `bytes=` range: `Ok((first, end))` with `end` exclusive,
/// `Err(())` when unsatisfiable, `None` for forms that are ignored.
fn parse_range(value: &str, total: usize) -> Option<Result<(usize, usize), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (a, z) = spec.split_once('-').filter(|_| !spec.contains(','))?;
    let (a, z) = (a.trim(), z.trim());
    let (first, end) = if a.is_empty() {
        let suffix: usize = z.parse().ok()?; // `-0` leaves first == total: unsatisfiable
        (total - suffix.min(total), total)
    } else if z.is_empty() {
        (a.parse().ok()?, total)
    } else {
        (
            a.parse().ok()?,
            z.parse::<usize>().ok()?.saturating_add(1).min(total),
        )
    };
    if first >= total {
        return Some(Err(()));
    }
    (end > first).then_some(Ok((first, end)))
}

/// Writes `reply`; returns whether the connection may serve another request.
async fn send(
    writer: &mut OwnedWriteHalf,
    reply: Reply,
    keep_alive: bool,
) -> std::io::Result<bool> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match &reply.body {
        Some(_) if reply.chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
        Some(body) => head.push_str(&format!("Content-Length: {}\r\n", body.len())),
        None => {}
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes()).await?;
    let body = match reply.body {
        Some(body) if !reply.head => body,
        _ => return Ok(keep_alive),
    };
    let (limit, cut) = match reply.cut {
        Some((n, cut)) => (n.min(body.len()), Some(cut)),
        None => (body.len(), None),
    };
    let piece = if reply.chunk == 0 {
        limit.max(1)
    } else {
        reply.chunk
    };
    let mut sent = 0;
    for (i, part) in body[..limit].chunks(piece).enumerate() {
        if i > 0 && !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        let start = sent;
        sent += part.len();
        match &reply.hold {
            Some((at, gate)) if start <= *at && *at < sent => {
                let (before, after) = part.split_at(at - start);
                write_part(writer, before, reply.chunked).await?;
                writer.flush().await?;
                gate.pass().await;
                write_part(writer, after, reply.chunked).await?;
            }
            _ => write_part(writer, part, reply.chunked).await?,
        }
    }
    match cut {
        Some(Cut::Close) => return Ok(false),
        Some(Cut::Stall) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Ok(false);
        }
        None if reply.chunked => writer.write_all(b"0\r\n\r\n").await?,
        None => {}
    }
    Ok(keep_alive)
}

/// Writes one piece of a body, framed as a chunk when `chunked`.
async fn write_part(
    writer: &mut OwnedWriteHalf,
    part: &[u8],
    chunked: bool,
) -> std::io::Result<()> {
    if part.is_empty() {
        return Ok(());
    }
    if chunked {
        let size = format!("{:x}\r\n", part.len());
        writer
            .write_all(&[size.as_bytes(), part, b"\r\n"].concat())
            .await
    } else {
        writer.write_all(part).await
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        304 => "Not Modified",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
