//! The management socket (docs/operations.md, "The service and its socket"): `custodian serve`
//! listens on the Unix socket `[serve] socket` names, and the command line sends its
//! management commands there instead of writing the catalog itself. The kernel names each
//! peer (`SO_PEERCRED`), so a command runs acting as that user with the groups the user
//! database gives it, against the service's roles file and catalog: a permission the roles
//! file does not grant cannot be had by pointing a config of one's own at the catalog.
//!
//! One request per connection: the client writes a JSON [`Request`] and shuts its side down;
//! the service answers one JSON [`Response`] and closes. A request larger than
//! [`MAX_REQUEST`], malformed, or not complete within [`READ_TIMEOUT`] is answered with a
//! refusal, and the service goes on serving. While a command runs the service writes a space
//! every [`KEEPALIVE`] (whitespace before a JSON value is part of it), so the command line
//! waits as long as a command takes and gives up on a service silent for [`SILENCE`]: one
//! that is stuck.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::app::manage::{self, Outcome};
use crate::app::serve::{Runner, Started};
use crate::app::{Loaded, with_sources};
use crate::schedule::service::SocketConfig;
use crate::users::Actor;

/// The largest request the service reads; management commands are a few hundred bytes.
pub const MAX_REQUEST: usize = 64 * 1024;
/// How long a peer has to send its whole request, so that a silent one cannot hold a thread.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a peer has to take its answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the service says it is still at a command.
pub const KEEPALIVE: Duration = Duration::from_secs(5);
/// How long the command line waits for a word from the service before it gives up on it.
pub const SILENCE: Duration = Duration::from_secs(60);
/// Connections served at once; more are answered that the service is busy.
const MAX_CONNECTIONS: usize = 32;
/// How long, and how many bytes, the service goes on reading what a peer still sends after
/// its answer (the rest of an oversized request): closing a Unix socket with unread bytes
/// resets it, and the peer would lose the refusal it is reading.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 4 * 1024 * 1024;
/// The largest answer the command line reads (a list of many policies or matters).
const MAX_RESPONSE: u64 = 256 * 1024 * 1024;

/// What a peer asks the service.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// A `lifecycle …` or `hold …` command.
    Manage(manage::Request),
    /// A run of a policy now, started by serve as its scheduled runs are.
    Run { policy: String },
}

/// The service's answer.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Done(Outcome),
    Run(Started),
    /// The command was refused or failed: the error as the command line prints it.
    Refused {
        error: String,
    },
}

/// Why the service could not listen on its socket.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "socket {0} is a symbolic link; custodian never follows one there: remove it, or set `socket` in [serve] to another path"
    )]
    Symlink(PathBuf),
    #[error(
        "{0} exists and is not a socket: remove it, or set `socket` in [serve] to another path"
    )]
    NotASocket(PathBuf),
    #[error("another custodian serve is listening on {0}: stop it first (one service per socket)")]
    InUse(PathBuf),
    #[error("socket {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("socket {path}: no group named `{group}` (`socket_group` in [serve])")]
    NoGroup { path: PathBuf, group: String },
    #[error(
        "socket {path}: cannot give it to group `{group}` (the service's user must be a member of that group)"
    )]
    Group {
        path: PathBuf,
        group: String,
        source: std::io::Error,
    },
}

/// Why the command line got no answer from the service.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the custodian service at {path} (is it running? start it with `custodian serve` as the service's user; `socket` in [serve] of the config names where it listens)"
    )]
    NotRunning {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "may not connect to the custodian service at {path} (ask its administrator to add you to the socket's group, `socket_group` in [serve])"
    )]
    Denied {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the custodian service at {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the custodian service at {path} answered what this custodian cannot read: {message}")]
    Answer { path: PathBuf, message: String },
    #[error(
        "the custodian service at {path} has said nothing for {} s, though it says it is alive every {} s while it works: it looks stuck (its log tells what it was doing; restart it if it stays so). What it was asked may still be done: look before asking again",
        .silence.as_secs(), KEEPALIVE.as_secs()
    )]
    Silent { path: PathBuf, silence: Duration },
}

/// The socket serve listens on; dropping it removes the socket file, if it is still the one
/// bound.
pub struct Listening {
    path: PathBuf,
    ino: (u64, u64),
}

impl Drop for Listening {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Listens on the socket `socket` names and serves each connection on a thread of its own:
/// `config` is read for each command (as a command line would read it), `runner` takes runs
/// asked for now.
pub fn listen(
    socket: &SocketConfig,
    config: &Path,
    runner: Runner,
) -> Result<Listening, ListenError> {
    let path = &socket.path;
    let io = |source| ListenError::Io {
        path: path.clone(),
        source,
    };
    clear_stale(path)?;
    let listener = bind(socket)?;
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    let listening = Listening {
        path: path.clone(),
        ino: (meta.dev(), meta.ino()),
    };
    let config = config.to_owned();
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("custodian-socket".into())
        .spawn(move || accept(listener, config, runner, busy))
        .map_err(io)?;
    tracing::info!("management socket: {}", path.display());
    Ok(listening)
}

/// What is at the socket path before binding: nothing; a socket no process listens on (a dead
/// serve's, removed); anything else is refused, a symbolic link too (never followed).
fn clear_stale(path: &Path) -> Result<(), ListenError> {
    let io = |source| ListenError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
        Ok(m) => m,
    };
    if meta.file_type().is_symlink() {
        return Err(ListenError::Symlink(path.to_owned()));
    }
    if !meta.file_type().is_socket() {
        return Err(ListenError::NotASocket(path.to_owned()));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(ListenError::InUse(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).map_err(io)?;
            tracing::warn!(
                "removed {}, the socket of a serve that is no longer running",
                path.display()
            );
            Ok(())
        }
        Err(e) => Err(io(e)),
    }
}

/// Binds the socket mode 0660 from the start (under a umask of 0117 for the moment of the
/// bind, before any run process is started), gives it to its group without following a link,
/// and only then listens: no one connects before the mode and group are right. bind(2) never
/// follows a symbolic link at the path; it fails when anything is there.
fn bind(socket: &SocketConfig) -> Result<UnixListener, ListenError> {
    use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
    use nix::sys::stat::{Mode, umask};
    let path = &socket.path;
    let io = |source: std::io::Error| ListenError::Io {
        path: path.clone(),
        source,
    };
    let errno = |e: nix::Error| io(std::io::Error::from(e));
    let fd: OwnedFd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(errno)?;
    let addr = UnixAddr::new(path.as_path()).map_err(errno)?;
    let previous = umask(Mode::from_bits_truncate(0o117));
    let bound = socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr);
    umask(previous);
    bound.map_err(|e| match e {
        nix::Error::EADDRINUSE => ListenError::InUse(path.clone()),
        e => errno(e),
    })?;
    if let Some(group) = &socket.group {
        let gid = nix::unistd::Group::from_name(group)
            .map_err(errno)?
            .ok_or_else(|| ListenError::NoGroup {
                path: path.clone(),
                group: group.clone(),
            })?
            .gid;
        std::os::unix::fs::lchown(path, None, Some(gid.as_raw())).map_err(|source| {
            let _ = std::fs::remove_file(path);
            ListenError::Group {
                path: path.clone(),
                group: group.clone(),
                source,
            }
        })?;
    }
    socket::listen(&fd, Backlog::new(64).map_err(errno)?).map_err(errno)?;
    Ok(UnixListener::from(fd))
}

/// Takes connections for as long as the process lives.
fn accept(listener: UnixListener, config: PathBuf, runner: Runner, busy: Arc<AtomicUsize>) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors, say: wait a little rather than spin.
                tracing::warn!("management socket: cannot take a connection: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Some(slot) = Slot::take(&busy) else {
            let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
            answer(
                &stream,
                &refused(format!(
                    "the service is serving {MAX_CONNECTIONS} connections already; try again"
                )),
            );
            continue;
        };
        let (config, runner) = (config.clone(), runner.clone());
        let spawned = std::thread::Builder::new()
            .name("custodian-socket-peer".into())
            .spawn(move || {
                let _slot = slot;
                serve_peer(&stream, &config, &runner);
            });
        if let Err(e) = spawned {
            tracing::error!("management socket: cannot serve a connection: {e}");
        }
    }
}

/// One of the [`MAX_CONNECTIONS`] connections served at once, given back when dropped (also
/// by a thread that panicked).
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(busy: &Arc<AtomicUsize>) -> Option<Slot> {
        if busy.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            busy.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot(busy.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A refusal, `error` as the command line prints it.
fn refused(error: String) -> Response {
    Response::Refused { error }
}

/// One connection: who it is (the kernel says), what it asks, the answer.
fn serve_peer(stream: &UnixStream, config: &Path, runner: &Runner) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let response = match peer(stream) {
        Ok((actor, pid)) => match read_request(stream) {
            Ok(request) => {
                tracing::info!(
                    "management socket: {} (process {pid}) asks {}",
                    actor.user,
                    describe(&request)
                );
                while_working(stream, KEEPALIVE, || {
                    execute(config, actor, &request, runner)
                })
            }
            Err(error) => {
                tracing::warn!(
                    "management socket: refused a request of {} (process {pid}): {error}",
                    actor.user
                );
                refused(error)
            }
        },
        Err(error) => refused(error),
    };
    answer(stream, &response);
}

/// What `work` returns, while a space is written to the peer every `every` until it does: the
/// peer hears from the service however long the work takes. A peer gone stops the spaces,
/// never the work.
fn while_working<T>(stream: &UnixStream, every: Duration, work: impl FnOnce() -> T) -> T {
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut stream = stream;
            while finished.recv_timeout(every) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                if stream.write_all(b" ").is_err() {
                    return;
                }
            }
        });
        let out = work();
        drop(done);
        out
    })
}

/// The peer's user, with its groups from the user database, and its process id.
fn peer(stream: &UnixStream) -> Result<(Actor, i32), String> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let cred = getsockopt(stream, PeerCredentials)
        .map_err(|e| format!("cannot tell who is connecting: {e}"))?;
    let actor = Actor::of_uid(cred.uid()).map_err(|e| e.to_string())?;
    Ok((actor, cred.pid()))
}

/// Reads the whole request (the peer shuts its side down after it) within the size cap and
/// [`READ_TIMEOUT`] in all, however slowly the peer trickles it.
fn read_request(mut stream: &UnixStream) -> Result<Request, String> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let late = || {
        format!(
            "request refused: not complete within {}s",
            READ_TIMEOUT.as_secs()
        )
    };
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late());
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(late());
            }
            Err(e) => return Err(format!("request refused: cannot read it: {e}")),
        }
        if bytes.len() > MAX_REQUEST {
            return Err(format!("request refused: larger than {MAX_REQUEST} bytes"));
        }
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("request refused: malformed: {e}"))
}

/// What a request asks, for serve's log.
fn describe(request: &Request) -> String {
    match request {
        Request::Run { policy } => format!("run {policy}"),
        Request::Manage(m) => serde_json::to_string(m).unwrap_or_default(),
    }
}

/// Runs the request acting as `actor`, with the config as it is now.
fn execute(config: &Path, actor: Actor, request: &Request, runner: &Runner) -> Response {
    let loaded = match Loaded::load(config) {
        Ok(l) => l.acting_as(actor),
        Err(e) => return refused(with_sources(&e)),
    };
    match request {
        Request::Manage(m) => match manage::execute(&loaded, m) {
            Ok(outcome) => Response::Done(outcome),
            Err(e) => refused(with_sources(&e)),
        },
        Request::Run { policy } => match runner.run_now(&loaded, policy) {
            Ok(started) => Response::Run(started),
            Err(e) => refused(with_sources(&e)),
        },
    }
}

fn answer(mut stream: &UnixStream, response: &Response) {
    let Ok(bytes) = serde_json::to_vec(response) else {
        return;
    };
    if stream.write_all(&bytes).is_err() {
        return;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    linger(stream);
}

/// Reads and drops what the peer still sends, within [`LINGER`] and [`LINGER_BYTES`], so
/// that closing does not reset the connection under the answer.
fn linger(mut stream: &UnixStream) {
    let deadline = Instant::now() + LINGER;
    let mut chunk = [0u8; 8192];
    let mut dropped = 0;
    while dropped < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => dropped += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Sends `request` to the service listening at `path` and waits for its answer, for as long
/// as the service keeps saying it is at it ([`SILENCE`]).
pub fn send(path: &Path, request: &Request) -> Result<Response, ClientError> {
    send_within(path, request, SILENCE)
}

/// [`send`], giving up on a service that says nothing for `silence`.
fn send_within(path: &Path, request: &Request, silence: Duration) -> Result<Response, ClientError> {
    let io = |source| ClientError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::PermissionDenied => ClientError::Denied {
            path: path.to_owned(),
            source,
        },
        _ => ClientError::NotRunning {
            path: path.to_owned(),
            source,
        },
    })?;
    let bytes = serde_json::to_vec(request).map_err(|e| io(e.into()))?;
    stream.write_all(&bytes).map_err(io)?;
    stream.shutdown(std::net::Shutdown::Write).map_err(io)?;
    stream.set_read_timeout(Some(silence)).map_err(io)?;
    let mut answer = Vec::new();
    (&stream)
        .take(MAX_RESPONSE)
        .read_to_end(&mut answer)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ClientError::Silent {
                path: path.to_owned(),
                silence,
            },
            _ => io(source),
        })?;
    serde_json::from_slice(&answer).map_err(|e| ClientError::Answer {
        path: path.to_owned(),
        message: if answer.trim_ascii().is_empty() {
            "nothing (did it stop?)".into()
        } else {
            e.to_string()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_answered_before_the_rest_of_an_oversized_request_reaches_the_peer_intact() {
        let (service, mut peer) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let error = read_request(&service).unwrap_err();
            answer(&service, &refused(error));
        });
        let _ = peer.write_all(&vec![b'{'; 1024 * 1024]);
        let _ = peer.shutdown(std::net::Shutdown::Write);
        let mut bytes = Vec::new();
        peer.read_to_end(&mut bytes).unwrap();
        server.join().unwrap();
        let response: Response = serde_json::from_slice(&bytes).unwrap();
        assert!(
            matches!(&response, Response::Refused { error } if error == "request refused: larger than 65536 bytes"),
            "{response:?}"
        );
    }

    /// A service at `dir/s` that takes one connection, reads its request and hands the stream
    /// to `then`.
    fn one_peer(
        dir: &Path,
        then: impl FnOnce(&UnixStream) + Send + 'static,
    ) -> (PathBuf, std::thread::JoinHandle<()>) {
        let path = dir.join("s");
        let listener = UnixListener::bind(&path).unwrap();
        let served = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            read_request(&stream).unwrap();
            then(&stream);
        });
        (path, served)
    }

    fn run(policy: &str) -> Request {
        Request::Run {
            policy: policy.into(),
        }
    }

    #[test]
    fn a_service_that_says_nothing_is_given_up_on_not_waited_for_forever() {
        let dir = tempfile::tempdir().unwrap();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (path, served) = one_peer(dir.path(), move |_| {
            let _ = held.recv();
        });
        let error = send_within(&path, &run("p"), Duration::from_millis(200)).unwrap_err();
        assert!(
            matches!(error, ClientError::Silent { ref path, silence }
                if path.ends_with("s") && silence == Duration::from_millis(200)),
            "{error:?}"
        );
        assert!(error.to_string().contains("looks stuck"), "{error}");
        release.send(()).unwrap();
        served.join().unwrap();
    }

    #[test]
    fn a_command_longer_than_the_clients_patience_is_waited_for_while_the_service_works() {
        let dir = tempfile::tempdir().unwrap();
        let (path, served) = one_peer(dir.path(), |stream| {
            let response = while_working(stream, Duration::from_millis(10), || {
                std::thread::sleep(Duration::from_millis(1500));
                refused("done at last".into())
            });
            answer(stream, &response);
        });
        let response = send_within(&path, &run("p"), Duration::from_millis(500)).unwrap();
        assert!(
            matches!(&response, Response::Refused { error } if error == "done at last"),
            "{response:?}"
        );
        served.join().unwrap();
    }

    #[test]
    fn a_peer_gone_stops_the_spaces_not_the_work() {
        let (service, peer) = UnixStream::pair().unwrap();
        drop(peer);
        let out = while_working(&service, Duration::from_millis(5), || {
            std::thread::sleep(Duration::from_millis(50));
            7
        });
        assert_eq!(out, 7);
    }
}
