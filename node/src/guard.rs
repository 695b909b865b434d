//! Who may talk to a node: browsers may not (the `Origin` check), peers must carry the cluster token,
//! and the token itself (given, or shared through a file the first node creates).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The origins that count as the node's own: its advertise URL's, and its listen address's. A browser
/// names the page's origin in `Origin` on every cross-site request and on every non-GET request; the
/// node serves no pages, so any other origin is a web page reaching for it.
#[derive(Clone, Debug)]
pub struct AllowedOrigins(Vec<Box<[u8]>>);

impl AllowedOrigins {
    pub fn new(advertise: &str, listen: SocketAddr) -> Self {
        let mut origins = Vec::new();
        if let Some(origin) = origin_of(advertise) {
            origins.push(origin);
        }
        let port = listen.port();
        if listen.ip().is_unspecified() || listen.ip().is_loopback() {
            origins.push(format!("http://127.0.0.1:{port}"));
            origins.push(format!("http://localhost:{port}"));
            origins.push(format!("http://[::1]:{port}"));
        } else {
            origins.push(format!("http://{listen}"));
        }
        let mut all: Vec<Box<[u8]>> = Vec::new();
        for origin in origins {
            // Browsers leave the scheme's default port out of `Origin`.
            let short = origin
                .strip_suffix(":80")
                .filter(|_| origin.starts_with("http://"))
                .or_else(|| {
                    origin
                        .strip_suffix(":443")
                        .filter(|_| origin.starts_with("https://"))
                });
            for form in [Some(origin.as_str()), short].into_iter().flatten() {
                let form: Box<[u8]> = form.as_bytes().into();
                if !all.contains(&form) {
                    all.push(form);
                }
            }
        }
        Self(all)
    }

    /// Whether `origin` (an `Origin` header's bytes) is one of the node's own. No allocation.
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.0.iter().any(|own| own.eq_ignore_ascii_case(origin))
    }
}

/// `scheme://host[:port]` of a URL, lowercased, without path or trailing slash.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{authority}").to_ascii_lowercase())
}

/// Compares secrets in time independent of where they first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 128 random bits from the operating system, as 32 hex digits.
pub fn random_token() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|error| format!("no randomness from the operating system: {error}"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Longest token file read (a token is a line of text).
const MAX_TOKEN_FILE: u64 = 4096;

/// The cluster token kept in `path`, shared by the nodes that can read it (a volume every container of
/// a compose project mounts). The first node to start writes a random one; creating it is atomic (a
/// hard link of a complete file, which fails if the name exists), so nodes starting at once agree.
pub fn cluster_token_from_file(path: &Path) -> Result<String, String> {
    let show = path.display();
    match read_token(path) {
        Ok(Some(token)) => return Ok(token),
        Ok(None) => {}
        Err(error) => {
            return Err(format!(
                "cannot read the cluster token file {show}: {error}"
            ))
        }
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create {} for the cluster token: {e}", dir.display()))?;
    let token = random_token()?;
    let draft = dir.join(format!(
        ".cluster-token.{}.{}",
        std::process::id(),
        &token[..8]
    ));
    let written =
        write_private(&draft, &token).and_then(|()| match std::fs::hard_link(&draft, path) {
            Ok(()) => Ok(()),
            // Another node was first: its token wins.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(error) => Err(error),
        });
    let _ = std::fs::remove_file(&draft);
    written.map_err(|e| format!("cannot create the cluster token file {show}: {e}"))?;
    match read_token(path) {
        Ok(Some(token)) => Ok(token),
        Ok(None) => Err(format!("the cluster token file {show} is empty")),
        Err(error) => Err(format!(
            "cannot read the cluster token file {show}: {error}"
        )),
    }
}

/// The file's first line, trimmed; `None` if the file does not exist.
fn read_token(path: &Path) -> std::io::Result<Option<String>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_TOKEN_FILE), &mut text)?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is empty",
        ));
    }
    Ok(Some(token.to_owned()))
}

/// Writes `text` to a new file readable by its owner only, synced before it gets its final name.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    writeln!(file, "{text}")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(addr: &str) -> SocketAddr {
        addr.parse().unwrap()
    }

    #[test]
    fn own_origins_are_allowed_and_others_are_not() {
        let origins = AllowedOrigins::new("http://127.0.0.1:6500/", listen("0.0.0.0:5000"));
        for own in [
            "http://127.0.0.1:6500",
            "HTTP://127.0.0.1:6500",
            "http://127.0.0.1:5000",
            "http://localhost:5000",
        ] {
            assert!(origins.allows(own.as_bytes()), "{own}");
        }
        for other in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:6501",
            "http://127.0.0.1:650",
            "https://127.0.0.1:6500",
            "",
        ] {
            assert!(!origins.allows(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn a_default_port_may_be_left_out_and_a_specific_listen_address_counts() {
        let origins = AllowedOrigins::new("http://Node1.example:80/api", listen("10.0.0.5:7001"));
        assert!(origins.allows(b"http://node1.example"));
        assert!(origins.allows(b"http://node1.example:80"));
        assert!(origins.allows(b"http://10.0.0.5:7001"));
        assert!(!origins.allows(b"http://localhost:7001"));
    }

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn the_first_node_creates_the_token_file_and_the_others_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets/cluster-token");
        let first = cluster_token_from_file(&path).unwrap();
        assert_eq!(first.len(), 32);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(cluster_token_from_file(&path).unwrap(), first);
        // Only the token file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["cluster-token"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn nodes_starting_at_once_agree_on_one_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster-token");
        let tokens: Vec<String> = std::thread::scope(|scope| {
            let starts: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| cluster_token_from_file(&path).unwrap()))
                .collect();
            starts.into_iter().map(|s| s.join().unwrap()).collect()
        });
        assert!(tokens.iter().all(|token| token == &tokens[0]), "{tokens:?}");
    }

    #[test]
    fn a_given_token_file_is_read_and_an_empty_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  my-token \nignored\n").unwrap();
        assert_eq!(cluster_token_from_file(&path).unwrap(), "my-token");
        std::fs::write(&path, "\n").unwrap();
        assert!(cluster_token_from_file(&path)
            .unwrap_err()
            .contains("empty"));
    }
}
