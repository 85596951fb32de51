//! The resolution beneath a root, both ways: with `openat2` and by the walk.

use super::*;
use std::os::unix::fs::symlink;

/// Runs `check` once resolving with `openat2` (where the kernel has it) and once
/// walking folder by folder.
fn both_ways(check: impl Fn()) {
    check();
    WALK_ONLY.with(|walk| walk.set(true));
    check();
    WALK_ONLY.with(|walk| walk.set(false));
}

#[test]
fn files_beneath_the_root_are_made_written_renamed_listed_and_removed() {
    both_ways(|| {
        let (dir, root) = tmp_root();
        let folder = root.join("a/b");
        folder.make_dirs(Perms::OWNER).unwrap();
        let file = folder.join("f");
        std::io::Write::write_all(&mut &file.create(Perms::OWNER).unwrap(), b"x").unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/b/f")).unwrap(), b"x");
        assert!(file.stat().unwrap().unwrap().is_file());
        let moved = root.join("a/g");
        file.rename_to(&moved).unwrap();
        let listed = root.join("a").list().unwrap();
        let mut names: Vec<_> = listed
            .iter()
            .map(|l| (l.path.file_name().unwrap().to_owned(), l.kind))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(names, [("b".into(), Kind::Dir), ("g".into(), Kind::File)]);
        assert!(moved.remove_if_there().unwrap());
        assert!(!moved.remove_if_there().unwrap());
        assert!(root.join("none/f").stat().unwrap().is_none());
        assert!(!root.join("none/f").remove_if_there().unwrap());
        assert!(root.join("none").list().unwrap().is_empty());
    });
}

#[test]
fn a_symlink_at_any_level_is_never_followed() {
    both_ways(|| {
        let (dir, root) = tmp_root();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("f"), b"secret").unwrap();
        std::fs::create_dir(dir.path().join("in")).unwrap();
        symlink(&outside, dir.path().join("in/link")).unwrap();
        symlink(outside.join("f"), dir.path().join("in/file")).unwrap();
        let through = root.join("in/link/f");
        let refused = |e: io::Error| assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        refused(through.open_read().unwrap_err());
        refused(through.create(Perms::OWNER).unwrap_err());
        refused(through.stat().unwrap_err());
        refused(through.remove_if_there().unwrap_err());
        refused(
            root.join("in/link/new")
                .make_dirs(Perms::OWNER)
                .unwrap_err(),
        );
        refused(root.join("in/link").list().unwrap_err());
        refused(root.join("in/file").open_read().unwrap_err());
        refused(root.join("in/x").rename_to(&through).unwrap_err());
        // The link itself is seen (not followed), and can be removed.
        let link = root.join("in/link");
        assert!(link.stat().unwrap().unwrap().is_symlink());
        assert_eq!(
            root.join("in")
                .list()
                .unwrap()
                .iter()
                .map(|l| l.kind)
                .collect::<Vec<_>>(),
            [Kind::Other, Kind::Other]
        );
        assert!(link.remove_if_there().unwrap());
        assert_eq!(std::fs::read(outside.join("f")).unwrap(), b"secret");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    });
}

#[test]
fn paths_that_would_leave_the_root_are_refused() {
    let (_dir, root) = tmp_root();
    for bad in ["../x", "/etc/passwd", "a/../../b"] {
        let err = root.join(bad).open_read().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
    }
    let outside = Path::new("/elsewhere/x");
    assert_eq!(
        root.locate(outside).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    let inside = root.join("a/b");
    assert_eq!(root.locate(&inside.path()).unwrap(), inside);
}

#[test]
fn a_removed_root_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache");
    std::fs::create_dir(&path).unwrap();
    let root = RootedPath::make_root(&path, Perms::OWNER).unwrap();
    std::fs::remove_dir(&path).unwrap();
    assert!(root.join("f").stat().unwrap().is_none());
    root.join("a").make_dirs(Perms::OWNER).unwrap();
    assert!(path.join("a").is_dir());
}

#[test]
fn a_peek_gives_the_stamp_that_the_file_s_own_metadata_gives() {
    let (dir, root) = tmp_root();
    let folder = root.join("a");
    folder.make_dirs(Perms::OWNER).unwrap();
    let path = folder.join("f");
    let file = path.create(Perms::OWNER).unwrap();
    std::io::Write::write_all(&mut &file, b"four").unwrap();
    let (stamp, is_file) = path.peek().unwrap().unwrap();
    assert!(is_file);
    assert_eq!(stamp, Stamp::of(&file.metadata().unwrap()).unwrap());
    assert_eq!(stamp.len, 4);
    // Another version of the file in its place is another stamp.
    let again = folder.join("g").create(Perms::OWNER).unwrap();
    std::io::Write::write_all(&mut &again, b"five!").unwrap();
    folder.join("g").rename_to(&path).unwrap();
    assert_ne!(path.peek().unwrap().unwrap().0, stamp);
    // A symlink at the last name is its own, not a file; nothing there is `None`.
    symlink(dir.path().join("a/f"), dir.path().join("a/link")).unwrap();
    assert!(!folder.join("link").peek().unwrap().unwrap().1);
    assert!(folder.join("none").peek().unwrap().is_none());
    assert!(root.join("none/f").peek().unwrap().is_none());
}
