//! The zip extractor against good and hostile archives, each built here
//! with the zip crate's writer (and patched by hand where the writer would
//! not write the lie).

use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::entries::EntryRule;
use super::{unpack, Budget, PackageError, MAX_RATIO};

type Writer = ZipWriter<Cursor<Vec<u8>>>;

fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
}

/// An archive written by `build`.
fn archive(build: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    build(&mut zip);
    zip.finish().unwrap().into_inner()
}

fn add(zip: &mut Writer, name: &str, data: &[u8], options: SimpleFileOptions) {
    zip.start_file(name, options).unwrap();
    zip.write_all(data).unwrap();
}

/// Regular files `(name, text, mode)`, deflated.
pub(super) fn zip_of(files: &[(&str, &str, u32)]) -> Vec<u8> {
    archive(|zip| {
        for (name, text, mode) in files {
            add(
                zip,
                name,
                text.as_bytes(),
                deflated().unix_permissions(*mode),
            );
        }
    })
}

/// Unpack `bytes` as a zip into a fresh state dir's `code` with `budget`.
/// On error, checks that nothing at all was left in the state dir.
fn unpack_with(
    bytes: &[u8],
    budget: &mut Budget,
) -> (tempfile::TempDir, Result<u64, PackageError>) {
    let input = tempfile::tempdir().unwrap();
    let zip = input.path().join("package.zip");
    fs::write(&zip, bytes).unwrap();
    let state = tempfile::tempdir().unwrap();
    let result = unpack(&zip, &state.path().join("code"), budget);
    if let Err(err) = &result {
        let left: Vec<_> = fs::read_dir(state.path()).unwrap().collect();
        assert!(left.is_empty(), "{err}: left behind {left:?}");
    }
    (state, result)
}

fn unpack_zip(bytes: &[u8]) -> (tempfile::TempDir, Result<u64, PackageError>) {
    unpack_with(bytes, &mut Budget::default())
}

/// The rule `bytes` breaks, at entry `entry`.
fn refused(bytes: &[u8], entry: &str) -> EntryRule {
    match unpack_zip(bytes).1 {
        Err(PackageError::Entry {
            entry: named, rule, ..
        }) => {
            assert_eq!(named, entry, "{rule}");
            rule
        }
        other => panic!("{entry}: expected an entry error, got {other:?}"),
    }
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn good_archive_keeps_tree_modes_and_inner_links() {
    let bytes = archive(|zip| {
        add(
            zip,
            "bootstrap",
            b"#!/bin/sh\n",
            deflated().unix_permissions(0o700),
        );
        add(
            zip,
            "app.py",
            b"def handler(e, c): return e\n",
            deflated().unix_permissions(0o600),
        );
        // A file before its directory's own entry, and a `./` root entry.
        add(zip, "pkg/sub/data.txt", b"data", deflated());
        zip.add_directory("pkg/", SimpleFileOptions::default())
            .unwrap();
        zip.add_directory("./", SimpleFileOptions::default())
            .unwrap();
        add(
            zip,
            "lib/libfoo.so.1",
            b"\x7fELF",
            deflated().unix_permissions(0o755),
        );
        zip.add_symlink("lib/libfoo.so", "libfoo.so.1", SimpleFileOptions::default())
            .unwrap();
        zip.add_symlink(
            "lib/data",
            "../pkg/sub/data.txt",
            SimpleFileOptions::default(),
        )
        .unwrap();
        zip.add_symlink("pkg/up", "..", SimpleFileOptions::default())
            .unwrap();
        zip.add_symlink("via", "pkg/up/lib/libfoo.so", SimpleFileOptions::default())
            .unwrap();
        // No Unix mode at all (as DOS tools write): a plain file.
        add(
            zip,
            "README",
            b"r",
            SimpleFileOptions::default().external_attributes(0),
        );
    });
    let (state, result) = unpack_zip(&bytes);
    let code = state.path().join("code");
    assert_eq!(result.unwrap(), 10 + 28 + 4 + 4 + 1);
    assert_eq!(fs::read_to_string(code.join("lib/data")).unwrap(), "data");
    assert_eq!(fs::read_to_string(code.join("via")).unwrap(), "\x7fELF");
    assert_eq!(
        fs::read_link(code.join("lib/libfoo.so")).unwrap(),
        Path::new("libfoo.so.1")
    );
    assert_eq!(mode(&code.join("bootstrap")), 0o755, "executable stays so");
    assert_eq!(mode(&code.join("app.py")), 0o644, "readable by the sandbox");
    assert_eq!(mode(&code.join("README")), 0o644);
    assert_eq!(mode(&code.join("pkg")), 0o755);
    assert_eq!(
        mode(&code.join("pkg/sub")),
        0o755,
        "implied directories too"
    );
    assert_eq!(mode(&code), 0o755);
    let names: Vec<_> = fs::read_dir(state.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["code"], "no partial directory is left");
}

#[test]
fn names_that_leave_the_root_are_refused() {
    for (name, expect) in [
        ("../x", "ParentDir"),
        ("a/../../x", "ParentDir"),
        ("a/../b", "ParentDir"),
        ("/etc/x", "Absolute"),
        ("..\\x", "Windows"),
        ("C:/x", "Windows"),
        ("c:x", "Windows"),
    ] {
        let bytes = zip_of(&[("ok.txt", "fine", 0o644), (name, "evil", 0o644)]);
        let rule = refused(&bytes, name);
        assert!(format!("{rule:?}").starts_with(expect), "{name}: {rule:?}");
    }
}

#[test]
fn errors_read_once_as_the_daemon_chains_them() {
    let bytes = zip_of(&[("../x", "evil", 0o644)]);
    let err = anyhow::Error::from(unpack_zip(&bytes).1.unwrap_err());
    let text = format!("{err:#}");
    assert!(
        text.ends_with(r#"package.zip: entry "../x": a `..` component would leave the package"#),
        "{text}"
    );
}

#[test]
fn symlinks_that_lead_out_are_refused() {
    let link = |name: &'static str, target: &'static str| {
        archive(move |zip| {
            zip.add_directory("sub", SimpleFileOptions::default())
                .unwrap();
            zip.add_symlink("sub/up", "..", SimpleFileOptions::default())
                .unwrap();
            zip.add_symlink(name, target, SimpleFileOptions::default())
                .unwrap();
        })
    };
    assert!(matches!(
        refused(&link("passwd", "/etc/passwd"), "passwd"),
        EntryRule::LinkAbsolute(_)
    ));
    assert!(matches!(
        refused(&link("sub/x", "../../x"), "sub/x"),
        EntryRule::LinkEscapes(_)
    ));
    // Lexically `sub/up/..` is `sub`, but `sub/up` is a link to the root,
    // whose parent is outside.
    assert!(matches!(
        refused(&link("evil", "sub/up/.."), "evil"),
        EntryRule::LinkEscapes(_)
    ));
    let looped = archive(|zip| {
        zip.add_symlink("a", "b", SimpleFileOptions::default())
            .unwrap();
        zip.add_symlink("b", "a", SimpleFileOptions::default())
            .unwrap();
    });
    assert!(matches!(refused(&looped, "a"), EntryRule::LinkLoop(_)));
}

#[test]
fn nothing_is_written_through_a_symlink_or_under_a_file() {
    let through = archive(|zip| {
        zip.add_directory("real", SimpleFileOptions::default())
            .unwrap();
        zip.add_symlink("d", "real", SimpleFileOptions::default())
            .unwrap();
        add(zip, "d/x", b"through the link", deflated());
    });
    assert!(matches!(
        refused(&through, "d/x"),
        EntryRule::ThroughSymlink(link) if link == "d"
    ));
    let under_file = zip_of(&[("a", "file", 0o644), ("a/b", "under it", 0o644)]);
    assert!(matches!(
        refused(&under_file, "a/b"),
        EntryRule::UnderFile(_)
    ));
}

#[test]
fn special_files_are_refused() {
    for (type_bits, what) in [
        (0o010000, "fifo"),
        (0o020000, "character device"),
        (0o060000, "block device"),
        (0o140000, "socket"),
    ] {
        let bytes = archive(|zip| {
            let attrs = (type_bits | 0o644) << 16;
            add(
                zip,
                "node",
                b"",
                SimpleFileOptions::default().external_attributes(attrs),
            );
        });
        // Archives written on Unix say so; external attributes alone leave
        // the system as the writer's default (Unix).
        match refused(&bytes, "node") {
            EntryRule::Special(w) => assert_eq!(w, what),
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn duplicates_are_refused() {
    let same_after_normalising = zip_of(&[("x.txt", "1", 0o644), ("./x.txt", "2", 0o644)]);
    assert!(matches!(
        refused(&same_after_normalising, "./x.txt"),
        EntryRule::Duplicate
    ));
    let file_and_dir = archive(|zip| {
        add(zip, "d", b"file", deflated());
        zip.add_directory("d", SimpleFileOptions::default())
            .unwrap();
    });
    assert!(matches!(refused(&file_and_dir, "d/"), EntryRule::Duplicate));
    // The writer refuses a name twice: write two names of one length and
    // make the second the first, in its local and central headers.
    let mut bytes = zip_of(&[("dup_a", "1", 0o644), ("dup_b", "2", 0o644)]);
    replace_all(&mut bytes, b"dup_b", b"dup_a");
    let (_state, result) = unpack_zip(&bytes);
    assert!(
        matches!(result, Err(PackageError::DuplicateNames { .. })),
        "{result:?}"
    );
}

#[test]
fn a_ratio_bomb_is_refused_before_writing() {
    let zeros = vec![0u8; 8 << 20];
    let bomb = archive(|zip| add(zip, "bomb", &zeros, deflated()));
    let rule = refused(&bomb, "bomb");
    assert!(
        matches!(rule, EntryRule::Ratio { declared, .. } if declared == 8 << 20),
        "{rule}"
    );
    assert!(rule.to_string().contains("zip bomb"), "{rule}");

    // Many entries each under the grace, the archive as a whole over it.
    let half = vec![0u8; 512 << 10];
    let many = archive(|zip| {
        for i in 0..8 {
            add(zip, &format!("part{i}"), &half, deflated());
        }
    });
    let (_state, result) = unpack_zip(&many);
    match result {
        Err(PackageError::ArchiveRatio {
            declared,
            archive_bytes,
            ..
        }) => assert!(declared > u128::from(archive_bytes) * u128::from(MAX_RATIO)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_entry_that_yields_more_than_it_declares_is_refused() {
    let text = vec![b'a'; 64 << 10];
    let mut bytes = archive(|zip| add(zip, "liar", &text, deflated()));
    // Uncompressed size: offset 22 of the local header, 24 of the central.
    let declared = 10u32.to_le_bytes();
    let local = find(&bytes, b"PK\x03\x04");
    bytes[local + 22..local + 26].copy_from_slice(&declared);
    let central = find(&bytes, b"PK\x01\x02");
    bytes[central + 24..central + 28].copy_from_slice(&declared);
    let rule = refused(&bytes, "liar");
    // The zip crate stops at the declared size itself (a read error); the
    // extractor's own count is the second guard.
    assert!(
        matches!(
            rule,
            EntryRule::SizeMismatch { declared: 10 } | EntryRule::Read(_)
        ),
        "{rule:?}"
    );
}

#[test]
fn encrypted_entries_are_refused() {
    // The writer encrypts only behind a feature sprout does not build:
    // set the "encrypted" flag bit in the local and central headers.
    let mut bytes = zip_of(&[("secret", "not really", 0o644)]);
    let local = find(&bytes, b"PK\x03\x04");
    bytes[local + 6] |= 1;
    let central = find(&bytes, b"PK\x01\x02");
    bytes[central + 8] |= 1;
    assert!(matches!(refused(&bytes, "secret"), EntryRule::Encrypted));
}

#[test]
fn budgets_bound_bytes_and_entries() {
    let three = zip_of(&[
        ("a", "aaaa", 0o644),
        ("b", "bbbb", 0o644),
        ("c", "cccc", 0o644),
    ]);
    let mut few = Budget {
        entries: 2,
        ..Budget::default()
    };
    let (_state, result) = unpack_with(&three, &mut few);
    assert!(
        matches!(result, Err(PackageError::TooManyEntries { .. })),
        "{result:?}"
    );
    let mut small = Budget {
        bytes: 11,
        ..Budget::default()
    };
    let (_state, result) = unpack_with(&three, &mut small);
    assert!(
        matches!(result, Err(PackageError::TooLarge { .. })),
        "{result:?}"
    );
    let mut exact = Budget {
        bytes: 12,
        entries: 3,
    };
    let (_state, result) = unpack_with(&three, &mut exact);
    assert_eq!(result.unwrap(), 12);
    assert_eq!(
        exact,
        Budget {
            bytes: 0,
            entries: 0
        },
        "spent exactly"
    );
}

#[test]
fn not_a_zip_is_a_clear_error() {
    let (_state, result) = unpack_zip(b"#!/bin/sh\necho this is not a zip\n");
    let err = result.unwrap_err();
    assert!(matches!(err, PackageError::Zip { .. }), "{err:?}");
    assert!(
        err.to_string().contains("not a readable zip archive"),
        "{err}"
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("signature present")
}

fn replace_all(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    let mut at = 0;
    while let Some(i) = bytes[at..].windows(from.len()).position(|w| w == from) {
        bytes[at + i..at + i + from.len()].copy_from_slice(to);
        at += i + from.len();
    }
}
