//! A crash-harness filesystem in the manner of LazyFS: a FUSE mount that serves a directory tree
//! and keeps apart what a power cut would keep, so that a test can run a program on it, cut the
//! power at any operation, and run the program again on what a disk would have kept.
//!
//! The model is strict POSIX. A file's durable content is its content at its last `fsync` or
//! `fdatasync` (empty if it was never synced); a directory's durable entries are its entries
//! (name to inode) at its last `fsync`, so a create, unlink or rename is lost until its directory
//! is synced, and a new file or directory exists after a cut only if its parent was synced after
//! it was made. Inodes keep their identity across renames. What is in the backing directory at
//! mount is durable. `sync(2)` and `syncfs(2)` make nothing durable: FUSE does not pass them on.
//!
//! The live tree is held in memory and the backing directory is untouched while mounted.
//! [`LazyFs::power_cut`] unmounts and rewrites the backing directory to the durable state only;
//! [`LazyFs::unmount_keeping_all`] unmounts and writes the whole live state (a clean shutdown).
//! Operations that change the tree or sync it are counted ([`Op`]); [`LazyFs::cut_after`] arms a
//! cut at the n-th, after which every operation fails with EIO, so that nothing after the cut
//! reaches the state. Mounting needs root and `/dev/fuse` (mount(2) is called directly).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, FopenFlags,
    Generation, INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, Session,
    SessionACL, TimeOrNow, WriteFlags,
};
use rustix::fs::{AtFlags, CWD, Mode, OFlags, Timespec, Timestamps};
use rustix::mount::{MountFlags, UnmountFlags};

/// How long the kernel may cache names and attributes: every change goes through this mount, so
/// the kernel's cache never goes stale.
const TTL: Duration = Duration::from_secs(1);

/// A kind of counted operation: each changes the live tree or makes some of it durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Data written to a file (one FUSE write: the kernel splits large writes).
    Write,
    /// A truncate, chmod, chown or utimes.
    SetAttr,
    /// A new name: create, mknod, mkdir, symlink or link.
    Create,
    /// A name removed: unlink or rmdir.
    Remove,
    /// A rename, also one that replaces a name.
    Rename,
    /// `fsync` or `fdatasync` of a file.
    Fsync,
    /// `fsync` of a directory.
    FsyncDir,
}

/// A mounted crash-harness filesystem. Dropping it unmounts it and leaves the backing
/// directory as it was at mount.
pub struct LazyFs {
    state: Arc<Mutex<State>>,
    session: Option<BackgroundSession>,
    backing: PathBuf,
    mountpoint: PathBuf,
}

impl LazyFs {
    /// Serves `backing` at `mountpoint` (made if missing); all of `backing` is durable.
    ///
    /// The mount is made here rather than by fuser, whose session unmounts its mountpoint when
    /// it ends: after a detach, that would unmount the next mount of the same directory.
    pub fn mount(backing: &Path, mountpoint: &Path) -> LazyFs {
        let state = Arc::new(Mutex::new(State::load(backing)));
        std::fs::create_dir_all(mountpoint).unwrap();
        let fuse = rustix::fs::open("/dev/fuse", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .expect("open /dev/fuse (the crash harness needs root and the fuse module)");
        let options = format!(
            "fd={},rootmode=40000,user_id={},group_id={}",
            fuse.as_raw_fd(),
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw()
        );
        rustix::mount::mount(
            "lazyfs",
            mountpoint,
            "fuse",
            MountFlags::NODEV | MountFlags::NOSUID,
            CString::new(options).unwrap().as_c_str(),
        )
        .unwrap_or_else(|e| panic!("mount {}: {e}", mountpoint.display()));
        let served = Served {
            state: state.clone(),
            backing: backing.to_owned(),
        };
        let session = Session::from_fd(served, fuse, SessionACL::Owner, Config::default())
            .and_then(Session::spawn)
            .unwrap_or_else(|e| {
                let _ = rustix::mount::unmount(mountpoint, UnmountFlags::DETACH);
                panic!("serve {}: {e}", mountpoint.display())
            });
        LazyFs {
            state,
            session: Some(session),
            backing: backing.to_owned(),
            mountpoint: mountpoint.to_owned(),
        }
    }

    /// How many operations have been counted since mount.
    pub fn ops(&self) -> u64 {
        self.state().log.len() as u64
    }

    /// The counted operations since mount, in order: operation n is `log()[n - 1]`.
    pub fn log(&self) -> Vec<Op> {
        self.state().log.clone()
    }

    /// Cuts the power once `n` operations have been counted (at once if they already have):
    /// from then on every operation fails with EIO.
    pub fn cut_after(&self, n: u64) {
        let mut state = self.state();
        state.cut_at = Some(n);
        state.check_cut();
    }

    /// Whether the power has been cut.
    pub fn is_cut(&self) -> bool {
        self.state().cut
    }

    /// Cuts the power (if [`LazyFs::cut_after`] has not yet), unmounts, and leaves in the backing
    /// directory only what was durable. Kill the program under test first: a mount still in use
    /// is detached, and its users get EIO until they close it.
    pub fn power_cut(mut self) {
        self.state().cut = true;
        self.unmount().unwrap();
        self.state().write(&self.backing, View::Durable);
    }

    /// Unmounts and writes the whole live tree to the backing directory, as a clean shutdown.
    pub fn unmount_keeping_all(mut self) {
        self.unmount().unwrap();
        let mut state = self.state();
        state.cut = true;
        state.write(&self.backing, View::Live);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Unmounts, which sends the kernel's dirty pages through the filesystem first, and waits
    /// for the session to end. A busy mount is detached instead: the power is cut, and the
    /// session serves EIO to its users until they let go.
    fn unmount(&mut self) -> std::io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        match rustix::mount::unmount(&self.mountpoint, UnmountFlags::empty()) {
            // The kernel ends the connection at unmount: fuser takes ENODEV for the end, but
            // passes on the ECONNABORTED that a read caught by the end gets.
            Ok(()) => match session.join() {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => Ok(()),
                ended => ended,
            },
            Err(rustix::io::Errno::BUSY) => {
                self.state().cut = true;
                Ok(rustix::mount::unmount(
                    &self.mountpoint,
                    UnmountFlags::DETACH,
                )?)
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        self.state().cut = true;
        let _ = self.unmount();
    }
}

/// The filesystem as the FUSE session sees it.
struct Served {
    state: Arc<Mutex<State>>,
    backing: PathBuf,
}

/// The live tree, what of it is durable, and the operation count.
struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// Open directory handles: the listing taken at the first read.
    listings: HashMap<u64, Vec<(u64, FileType, OsString)>>,
    next_fh: u64,
    log: Vec<Op>,
    cut_at: Option<u64>,
    cut: bool,
}

struct Node {
    kind: Kind,
    meta: Meta,
    /// The metadata at the last sync (at creation if never synced).
    durable_meta: Meta,
    /// Live names of this node.
    links: u32,
    /// Open file handles.
    opens: u32,
}

#[derive(Clone, Copy)]
struct Meta {
    perm: u16,
    uid: u32,
    gid: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
}

enum Kind {
    File {
        data: Arc<Vec<u8>>,
        durable: Arc<Vec<u8>>,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
        durable: BTreeMap<OsString, u64>,
        parent: u64,
    },
    Symlink(PathBuf),
    /// A FIFO, socket or device node: the kernel serves its I/O.
    Special(FileType, u32),
}

/// Which state of the tree to write out.
#[derive(Clone, Copy)]
enum View {
    Live,
    Durable,
}

type Res<T> = Result<T, Errno>;

impl State {
    /// Reads the tree under `backing`, all of it durable.
    fn load(backing: &Path) -> State {
        let meta = std::fs::metadata(backing)
            .unwrap_or_else(|e| panic!("backing directory {}: {e}", backing.display()));
        let mut state = State {
            nodes: HashMap::new(),
            next_ino: INodeNo::ROOT.0 + 1,
            listings: HashMap::new(),
            next_fh: 1,
            log: Vec::new(),
            cut_at: None,
            cut: false,
        };
        let root = Kind::Dir {
            entries: BTreeMap::new(),
            durable: BTreeMap::new(),
            parent: INodeNo::ROOT.0,
        };
        state
            .nodes
            .insert(INodeNo::ROOT.0, Node::new(root, meta_of(&meta)));
        state.load_dir(backing, INodeNo::ROOT.0, &mut HashMap::new());
        state
    }

    fn load_dir(&mut self, dir: &Path, ino: u64, seen: &mut HashMap<(u64, u64), u64>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let md = std::fs::symlink_metadata(&path).unwrap();
            let child = match seen.get(&(md.dev(), md.ino())) {
                Some(&child) => child,
                None => {
                    let kind = match FileType::from_std(md.file_type()).unwrap() {
                        FileType::RegularFile => {
                            let data = Arc::new(std::fs::read(&path).unwrap());
                            Kind::File {
                                durable: data.clone(),
                                data,
                            }
                        }
                        FileType::Directory => Kind::Dir {
                            entries: BTreeMap::new(),
                            durable: BTreeMap::new(),
                            parent: ino,
                        },
                        FileType::Symlink => Kind::Symlink(std::fs::read_link(&path).unwrap()),
                        special => Kind::Special(special, md.rdev() as u32),
                    };
                    let child = self.add(Node::new(kind, meta_of(&md)));
                    seen.insert((md.dev(), md.ino()), child);
                    if md.is_dir() {
                        self.load_dir(&path, child, seen);
                    }
                    child
                }
            };
            self.node_mut(child).unwrap().links += 1;
            let Kind::Dir {
                entries, durable, ..
            } = &mut self.node_mut(ino).unwrap().kind
            else {
                unreachable!()
            };
            entries.insert(entry.file_name(), child);
            durable.insert(entry.file_name(), child);
        }
    }

    fn add(&mut self, node: Node) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        ino
    }

    fn node(&self, ino: u64) -> Res<&Node> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> Res<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn entries(&self, dir: u64) -> Res<&BTreeMap<OsString, u64>> {
        match &self.node(dir)?.kind {
            Kind::Dir { entries, .. } => Ok(entries),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: u64) -> Res<&mut BTreeMap<OsString, u64>> {
        let node = self.node_mut(dir)?;
        node.meta.mtime = SystemTime::now();
        node.meta.ctime = node.meta.mtime;
        match &mut node.kind {
            Kind::Dir { entries, .. } => Ok(entries),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn entry(&self, dir: u64, name: &OsStr) -> Res<u64> {
        self.entries(dir)?.get(name).copied().ok_or(Errno::ENOENT)
    }

    fn data_mut(&mut self, ino: u64) -> Res<&mut Vec<u8>> {
        let node = self.node_mut(ino)?;
        node.meta.mtime = SystemTime::now();
        node.meta.ctime = node.meta.mtime;
        match &mut node.kind {
            Kind::File { data, .. } => Ok(Arc::make_mut(data)),
            Kind::Dir { .. } => Err(Errno::EISDIR),
            _ => Err(Errno::EINVAL),
        }
    }

    fn attr(&self, ino: u64) -> Res<FileAttr> {
        let node = self.node(ino)?;
        let (size, nlink, rdev) = match &node.kind {
            Kind::File { data, .. } => (data.len() as u64, node.links, 0),
            Kind::Dir { entries, .. } => {
                let subdirs = entries
                    .values()
                    .filter(|&e| self.nodes[e].file_type() == FileType::Directory)
                    .count();
                (4096, 2 + subdirs as u32, 0)
            }
            Kind::Symlink(target) => (target.as_os_str().len() as u64, node.links, 0),
            Kind::Special(_, rdev) => (0, node.links, *rdev),
        };
        let m = node.meta;
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime,
            crtime: m.ctime,
            kind: node.file_type(),
            perm: m.perm,
            nlink,
            uid: m.uid,
            gid: m.gid,
            rdev,
            blksize: 4096,
            flags: 0,
        })
    }

    /// Makes `name` in `dir` a new node of `kind`.
    fn make(&mut self, req: &Request, dir: u64, name: &OsStr, kind: Kind, perm: u32) -> Res<u64> {
        if self.entries(dir)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let now = SystemTime::now();
        let meta = Meta {
            perm: (perm & 0o7777) as u16,
            uid: req.uid(),
            gid: req.gid(),
            atime: now,
            mtime: now,
            ctime: now,
        };
        let ino = self.add(Node::new(kind, meta));
        self.link(ino, dir, name)?;
        Ok(ino)
    }

    fn link(&mut self, ino: u64, dir: u64, name: &OsStr) -> Res<()> {
        self.entries_mut(dir)?.insert(name.to_owned(), ino);
        let node = self.node_mut(ino)?;
        node.links += 1;
        node.meta.ctime = SystemTime::now();
        Ok(())
    }

    fn unlink(&mut self, dir: u64, name: &OsStr) -> Res<()> {
        let ino = self.entries_mut(dir)?.remove(name).ok_or(Errno::ENOENT)?;
        let node = self.node_mut(ino)?;
        node.links -= 1;
        node.meta.ctime = SystemTime::now();
        self.drop_if_unreachable(ino);
        Ok(())
    }

    /// Frees the live data of a file no name or handle reaches; what is durable stays.
    fn drop_if_unreachable(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino)
            && node.links == 0
            && node.opens == 0
            && let Kind::File { data, .. } = &mut node.kind
        {
            *data = Arc::default();
        }
    }

    /// Checks that `name` in `dir` may be removed: a directory (empty) if `dir_wanted`, else not
    /// a directory.
    fn check_removable(&self, dir: u64, name: &OsStr, dir_wanted: bool) -> Res<()> {
        let ino = self.entry(dir, name)?;
        match (&self.node(ino)?.kind, dir_wanted) {
            (Kind::Dir { entries, .. }, true) if !entries.is_empty() => Err(Errno::ENOTEMPTY),
            (Kind::Dir { .. }, true) => Ok(()),
            (Kind::Dir { .. }, false) => Err(Errno::EISDIR),
            (_, true) => Err(Errno::ENOTDIR),
            (_, false) => Ok(()),
        }
    }

    fn rename(
        &mut self,
        dir: u64,
        name: &OsStr,
        new_dir: u64,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Res<()> {
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return Err(Errno::EINVAL);
        }
        let ino = self.entry(dir, name)?;
        if let Some(&old) = self.entries(new_dir)?.get(new_name) {
            if old == ino {
                return Ok(());
            }
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            let is_dir = self.node(ino)?.file_type() == FileType::Directory;
            self.check_removable(new_dir, new_name, is_dir)?;
            self.unlink(new_dir, new_name)?;
        }
        self.entries_mut(dir)?.remove(name);
        self.entries_mut(new_dir)?.insert(new_name.to_owned(), ino);
        let node = self.node_mut(ino)?;
        node.meta.ctime = SystemTime::now();
        if let Kind::Dir { parent, .. } = &mut node.kind {
            *parent = new_dir;
        }
        Ok(())
    }

    /// Makes the node's content (a file's data, a directory's entries) and metadata durable.
    fn sync(&mut self, ino: u64) -> Res<()> {
        let node = self.node_mut(ino)?;
        node.durable_meta = node.meta;
        match &mut node.kind {
            Kind::File { data, durable } => *durable = data.clone(),
            Kind::Dir {
                entries, durable, ..
            } => durable.clone_from(entries),
            Kind::Symlink(_) | Kind::Special(..) => {}
        }
        Ok(())
    }

    /// The listing of a directory, `.` and `..` first.
    fn listing(&self, ino: u64) -> Res<Vec<(u64, FileType, OsString)>> {
        let Kind::Dir {
            entries, parent, ..
        } = &self.node(ino)?.kind
        else {
            return Err(Errno::ENOTDIR);
        };
        let mut listing = vec![
            (ino, FileType::Directory, ".".into()),
            (*parent, FileType::Directory, "..".into()),
        ];
        for (name, &child) in entries {
            listing.push((child, self.nodes[&child].file_type(), name.clone()));
        }
        Ok(listing)
    }

    fn check_cut(&mut self) {
        if self.cut_at.is_some_and(|n| self.log.len() as u64 >= n) {
            self.cut = true;
        }
    }

    /// Replaces everything in `backing` with the tree as `view` sees it.
    fn write(&self, backing: &Path, view: View) {
        for entry in std::fs::read_dir(backing).unwrap() {
            let path = entry.unwrap().path();
            if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
        self.write_dir(
            INodeNo::ROOT.0,
            backing,
            view,
            &mut HashMap::new(),
            &mut HashSet::new(),
        );
    }

    /// Writes the entries of directory `ino` into `path`. A file met again is a hard link to
    /// where it was first written; a directory met again (a move whose source directory was not
    /// synced leaves it durable in both) is written only where it was first met.
    fn write_dir(
        &self,
        ino: u64,
        path: &Path,
        view: View,
        files: &mut HashMap<u64, PathBuf>,
        dirs: &mut HashSet<u64>,
    ) {
        dirs.insert(ino);
        let Kind::Dir {
            entries, durable, ..
        } = &self.nodes[&ino].kind
        else {
            unreachable!()
        };
        let entries = match view {
            View::Live => entries,
            View::Durable => durable,
        };
        for (name, &child) in entries {
            let node = &self.nodes[&child];
            let target = path.join(name);
            match &node.kind {
                Kind::File { .. } if files.contains_key(&child) => {
                    std::fs::hard_link(&files[&child], &target).unwrap();
                    continue;
                }
                Kind::File { data, durable } => {
                    let data = match view {
                        View::Live => data,
                        View::Durable => durable,
                    };
                    std::fs::write(&target, data.as_slice()).unwrap();
                    files.insert(child, target.clone());
                }
                Kind::Dir { .. } if dirs.contains(&child) => continue,
                Kind::Dir { .. } => {
                    std::fs::create_dir(&target).unwrap();
                    self.write_dir(child, &target, view, files, dirs);
                }
                Kind::Symlink(link) => std::os::unix::fs::symlink(link, &target).unwrap(),
                Kind::Special(kind, rdev) => rustix::fs::mknodat(
                    CWD,
                    &target,
                    special_type(*kind),
                    Mode::from_raw_mode(0o600),
                    u64::from(*rdev),
                )
                .unwrap(),
            }
            node.write_meta(&target, view);
        }
        self.nodes[&ino].write_meta(path, view);
    }
}

impl Kind {
    fn empty_file() -> Kind {
        Kind::File {
            data: Arc::default(),
            durable: Arc::default(),
        }
    }
}

impl Node {
    fn file_type(&self) -> FileType {
        match self.kind {
            Kind::File { .. } => FileType::RegularFile,
            Kind::Dir { .. } => FileType::Directory,
            Kind::Symlink(_) => FileType::Symlink,
            Kind::Special(kind, _) => kind,
        }
    }

    fn new(kind: Kind, meta: Meta) -> Node {
        Node {
            kind,
            meta,
            durable_meta: meta,
            links: 0,
            opens: 0,
        }
    }

    fn write_meta(&self, path: &Path, view: View) {
        let meta = match view {
            View::Live => self.meta,
            View::Durable => self.durable_meta,
        };
        std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid)).unwrap();
        if !matches!(self.kind, Kind::Symlink(_)) {
            let mode = Mode::from_raw_mode(meta.perm.into());
            rustix::fs::chmodat(CWD, path, mode, AtFlags::empty()).unwrap();
        }
        let times = Timestamps {
            last_access: timespec(meta.atime),
            last_modification: timespec(meta.mtime),
        };
        rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }
}

/// Locks the state, also after a panic elsewhere: a poisoned state is only read or frozen.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn meta_of(md: &std::fs::Metadata) -> Meta {
    let time = |secs: i64, nsecs: i64| UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32);
    Meta {
        perm: (md.mode() & 0o7777) as u16,
        uid: md.uid(),
        gid: md.gid(),
        atime: time(md.atime(), md.atime_nsec()),
        mtime: time(md.mtime(), md.mtime_nsec()),
        ctime: time(md.ctime(), md.ctime_nsec()),
    }
}

fn timespec(t: SystemTime) -> Timespec {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timespec {
        tv_sec: since.as_secs() as i64,
        tv_nsec: since.subsec_nanos().into(),
    }
}

fn special_type(kind: FileType) -> rustix::fs::FileType {
    match kind {
        FileType::NamedPipe => rustix::fs::FileType::Fifo,
        FileType::Socket => rustix::fs::FileType::Socket,
        FileType::CharDevice => rustix::fs::FileType::CharacterDevice,
        FileType::BlockDevice => rustix::fs::FileType::BlockDevice,
        other => unreachable!("{other:?} is not a special file"),
    }
}

impl Served {
    /// Runs `f` on the state unless the power is cut; counts `op` if it succeeds.
    fn run<T>(&self, op: Option<Op>, f: impl FnOnce(&mut State) -> Res<T>) -> Res<T> {
        let mut state = lock(&self.state);
        if state.cut {
            return Err(Errno::EIO);
        }
        let out = f(&mut state)?;
        if let Some(op) = op {
            state.log.push(op);
            state.check_cut();
        }
        Ok(out)
    }

    /// Runs `f`, which makes a name, and answers with the named node's attributes.
    fn run_make(&self, f: impl FnOnce(&mut State) -> Res<u64>) -> Res<FileAttr> {
        self.run(Some(Op::Create), |s| f(s).and_then(|ino| s.attr(ino)))
    }
}

/// A FUSE reply that carries a `T`, or an error.
trait Answer<T> {
    fn answer(self, result: Res<T>);
}

macro_rules! answer {
    ($reply:ty, $t:ty, |$r:ident, $v:ident| $ok:expr) => {
        impl Answer<$t> for $reply {
            fn answer(self, result: Res<$t>) {
                let $r = self;
                match result {
                    Ok($v) => $ok,
                    Err(e) => $r.error(e),
                }
            }
        }
    };
}

answer!(ReplyEmpty, (), |r, _v| r.ok());
answer!(ReplyEntry, FileAttr, |r, a| r.entry(
    &TTL,
    &a,
    Generation(0)
));
answer!(ReplyAttr, FileAttr, |r, a| r.attr(&TTL, &a));
answer!(ReplyData, Vec<u8>, |r, d| r.data(&d));
answer!(ReplyOpen, u64, |r, fh| r
    .opened(FileHandle(fh), FopenFlags::empty()));
answer!(ReplyWrite, u32, |r, n| r.written(n));
answer!(ReplyCreate, FileAttr, |r, a| r.created(
    &TTL,
    &a,
    Generation(0),
    FileHandle(0),
    FopenFlags::empty()
));
answer!(ReplyStatfs, rustix::fs::StatVfs, |r, s| r.statfs(
    s.f_blocks,
    s.f_bfree,
    s.f_bavail,
    s.f_files,
    s.f_ffree,
    s.f_bsize as u32,
    s.f_namemax as u32,
    s.f_frsize as u32
));

impl fuser::Filesystem for Served {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply.answer(self.run(None, |s| s.attr(s.entry(parent.0, name)?)));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply.answer(self.run(None, |s| s.attr(ino.0)));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.answer(self.run(Some(Op::SetAttr), |s| {
            if let Some(size) = size {
                s.data_mut(ino.0)?.resize(size as usize, 0);
            }
            let now = SystemTime::now();
            let time = |t: TimeOrNow| match t {
                TimeOrNow::SpecificTime(t) => t,
                TimeOrNow::Now => now,
            };
            let meta = &mut s.node_mut(ino.0)?.meta;
            if let Some(mode) = mode {
                meta.perm = (mode & 0o7777) as u16;
            }
            meta.uid = uid.unwrap_or(meta.uid);
            meta.gid = gid.unwrap_or(meta.gid);
            meta.atime = atime.map_or(meta.atime, time);
            meta.mtime = mtime.map_or(meta.mtime, time);
            meta.ctime = now;
            s.attr(ino.0)
        }));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        reply.answer(self.run(None, |s| match &s.node(ino.0)?.kind {
            Kind::Symlink(target) => Ok(target.as_os_str().as_encoded_bytes().to_vec()),
            _ => Err(Errno::EINVAL),
        }));
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = match rustix::fs::FileType::from_raw_mode(mode) {
            rustix::fs::FileType::RegularFile => Kind::empty_file(),
            rustix::fs::FileType::Fifo => Kind::Special(FileType::NamedPipe, 0),
            rustix::fs::FileType::Socket => Kind::Special(FileType::Socket, 0),
            rustix::fs::FileType::CharacterDevice => Kind::Special(FileType::CharDevice, rdev),
            rustix::fs::FileType::BlockDevice => Kind::Special(FileType::BlockDevice, rdev),
            _ => return reply.error(Errno::EINVAL),
        };
        reply.answer(self.run_make(|s| s.make(req, parent.0, name, kind, mode & !umask)));
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let kind = Kind::Dir {
            entries: BTreeMap::new(),
            durable: BTreeMap::new(),
            parent: parent.0,
        };
        reply.answer(self.run_make(|s| s.make(req, parent.0, name, kind, mode & !umask)));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply.answer(self.run(Some(Op::Remove), |s| {
            s.check_removable(parent.0, name, false)?;
            s.unlink(parent.0, name)
        }));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply.answer(self.run(Some(Op::Remove), |s| {
            s.check_removable(parent.0, name, true)?;
            s.unlink(parent.0, name)
        }));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let kind = Kind::Symlink(target.to_owned());
        reply.answer(self.run_make(|s| s.make(req, parent.0, link_name, kind, 0o777)));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.answer(self.run(Some(Op::Rename), |s| {
            s.rename(parent.0, name, newparent.0, newname, flags)
        }));
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.answer(self.run_make(|s| {
            if s.node(ino.0)?.file_type() == FileType::Directory {
                return Err(Errno::EPERM);
            }
            if s.entries(newparent.0)?.contains_key(newname) {
                return Err(Errno::EEXIST);
            }
            s.link(ino.0, newparent.0, newname)?;
            Ok(ino.0)
        }));
    }

    /// Opens without direct I/O, so that files can be mmapped (SQLite's WAL index): the kernel
    /// may answer reads from its page cache, which it drops at each open, and sends each write
    /// here at once (fuser asks for no writeback cache); dirty mmapped pages come at its leisure.
    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.answer(self.run(None, |s| {
            s.node_mut(ino.0)?.opens += 1;
            Ok(0)
        }));
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        reply.answer(self.run(None, |s| match &s.node(ino.0)?.kind {
            Kind::File { data, .. } => {
                let start = (offset as usize).min(data.len());
                let end = (start + size as usize).min(data.len());
                Ok(data[start..end].to_vec())
            }
            _ => Err(Errno::EISDIR),
        }));
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        bytes: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.answer(self.run(Some(Op::Write), |s| {
            let data = s.data_mut(ino.0)?;
            let offset = offset as usize;
            if data.len() < offset {
                data.resize(offset, 0);
            }
            let overlap = (data.len() - offset).min(bytes.len());
            data[offset..offset + overlap].copy_from_slice(&bytes[..overlap]);
            data.extend_from_slice(&bytes[overlap..]);
            Ok(bytes.len() as u32)
        }));
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.answer(self.run(None, |_| Ok(())));
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = lock(&self.state);
        if let Ok(node) = state.node_mut(ino.0) {
            node.opens -= 1;
            state.drop_if_unreachable(ino.0);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.answer(self.run(Some(Op::Fsync), |s| s.sync(ino.0)));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.answer(self.run(None, |s| {
            s.entries(ino.0)?;
            let fh = s.next_fh;
            s.next_fh += 1;
            s.listings.insert(fh, Vec::new());
            Ok(fh)
        }));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listing = self.run(None, |s| {
            if offset == 0 {
                let listing = s.listing(ino.0)?;
                s.listings.insert(fh.0, listing);
            }
            Ok(s.listings.get(&fh.0).cloned().unwrap_or_default())
        });
        match listing {
            Ok(listing) => {
                for (i, (child, kind, name)) in listing.iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(*child), i as u64 + 1, *kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.state).listings.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.answer(self.run(Some(Op::FsyncDir), |s| s.sync(ino.0)));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.answer(self.run(None, |_| {
            rustix::fs::statvfs(&self.backing).map_err(|e| Errno::from_i32(e.raw_os_error()))
        }));
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.answer(self.run(None, |s| s.node(ino.0).map(|_| ())));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let flags = OFlags::from_bits_retain(flags as u32);
        reply.answer(self.run_make(|s| {
            let ino = match s.entry(parent.0, name) {
                Ok(_) if flags.contains(OFlags::EXCL) => return Err(Errno::EEXIST),
                Ok(ino) => {
                    if flags.contains(OFlags::TRUNC) {
                        s.data_mut(ino)?.clear();
                    }
                    ino
                }
                Err(_) => s.make(req, parent.0, name, Kind::empty_file(), mode & !umask)?,
            };
            s.node_mut(ino)?.opens += 1;
            Ok(ino)
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::process::{Command, Stdio};

    use rusqlite::Connection;

    use super::*;

    /// A backing directory and a mountpoint, in a temporary directory of their own.
    struct Disk {
        _dir: tempfile::TempDir,
        backing: PathBuf,
        mnt: PathBuf,
    }

    impl Disk {
        fn new() -> Disk {
            let dir = tempfile::tempdir().unwrap();
            let backing = dir.path().join("disk");
            std::fs::create_dir(&backing).unwrap();
            Disk {
                backing,
                mnt: dir.path().join("mnt"),
                _dir: dir,
            }
        }

        fn mount(&self) -> LazyFs {
            LazyFs::mount(&self.backing, &self.mnt)
        }
    }

    fn fsync(path: &Path) {
        File::open(path).unwrap().sync_all().unwrap();
    }

    fn write_synced(path: &Path, bytes: &[u8]) {
        let mut f = File::create(path).unwrap();
        f.write_all(bytes).unwrap();
        f.sync_all().unwrap();
    }

    fn read(path: &Path) -> Option<Vec<u8>> {
        std::fs::read(path).ok()
    }

    #[test]
    fn data_written_without_fsync_is_lost() {
        let disk = Disk::new();
        std::fs::write(disk.backing.join("old"), b"as mounted").unwrap();
        let fs = disk.mount();
        std::fs::write(disk.mnt.join("new"), b"never synced").unwrap();
        fsync(&disk.mnt);
        std::fs::write(disk.mnt.join("old"), b"overwritten").unwrap();
        assert_eq!(read(&disk.mnt.join("new")).unwrap(), b"never synced");
        fs.power_cut();
        assert_eq!(read(&disk.backing.join("new")).unwrap(), b"");
        assert_eq!(read(&disk.backing.join("old")).unwrap(), b"as mounted");
    }

    #[test]
    fn data_fsynced_is_kept_and_later_writes_are_not() {
        let disk = Disk::new();
        let fs = disk.mount();
        let mut f = File::create(disk.mnt.join("f")).unwrap();
        f.write_all(b"first").unwrap();
        f.sync_data().unwrap();
        f.write_all(b" and second").unwrap();
        drop(f);
        fsync(&disk.mnt);
        fs.power_cut();
        assert_eq!(read(&disk.backing.join("f")).unwrap(), b"first");
    }

    #[test]
    fn a_rename_is_kept_only_once_its_directory_is_synced() {
        let disk = Disk::new();
        for dir in ["unsynced", "synced"] {
            std::fs::create_dir(disk.backing.join(dir)).unwrap();
            std::fs::write(disk.backing.join(dir).join("final"), b"old").unwrap();
        }
        let fs = disk.mount();
        for dir in ["unsynced", "synced"] {
            let dir = disk.mnt.join(dir);
            write_synced(&dir.join("tmp"), b"new");
            fsync(&dir);
            std::fs::rename(dir.join("tmp"), dir.join("final")).unwrap();
        }
        fsync(&disk.mnt.join("synced"));
        fs.power_cut();
        let unsynced = disk.backing.join("unsynced");
        assert_eq!(read(&unsynced.join("final")).unwrap(), b"old");
        assert_eq!(read(&unsynced.join("tmp")).unwrap(), b"new");
        let synced = disk.backing.join("synced");
        assert_eq!(read(&synced.join("final")).unwrap(), b"new");
        assert_eq!(read(&synced.join("tmp")), None);
    }

    #[test]
    fn a_move_synced_only_where_it_went_leaves_the_file_in_both_directories() {
        let disk = Disk::new();
        std::fs::create_dir(disk.backing.join("from")).unwrap();
        std::fs::create_dir(disk.backing.join("to")).unwrap();
        std::fs::write(disk.backing.join("from/f"), b"f").unwrap();
        let fs = disk.mount();
        std::fs::rename(disk.mnt.join("from/f"), disk.mnt.join("to/f")).unwrap();
        fsync(&disk.mnt.join("to"));
        fs.power_cut();
        let from = std::fs::metadata(disk.backing.join("from/f")).unwrap();
        let to = std::fs::metadata(disk.backing.join("to/f")).unwrap();
        assert_eq!((from.ino(), from.nlink()), (to.ino(), 2));
    }

    #[test]
    fn a_new_name_is_lost_until_its_parent_is_synced() {
        let disk = Disk::new();
        let fs = disk.mount();
        std::fs::create_dir(disk.mnt.join("old")).unwrap();
        fsync(&disk.mnt);
        write_synced(&disk.mnt.join("old/file"), b"synced, its directory not");
        std::fs::create_dir(disk.mnt.join("new")).unwrap();
        write_synced(&disk.mnt.join("new/file"), b"synced");
        fsync(&disk.mnt.join("new"));
        fs.power_cut();
        assert!(disk.backing.join("old").is_dir());
        assert_eq!(read(&disk.backing.join("old/file")), None);
        assert!(!disk.backing.join("new").exists());
    }

    #[test]
    fn an_unlink_not_yet_synced_comes_back() {
        let disk = Disk::new();
        std::fs::write(disk.backing.join("a"), b"a").unwrap();
        std::fs::write(disk.backing.join("b"), b"b").unwrap();
        std::fs::create_dir(disk.backing.join("d")).unwrap();
        std::fs::write(disk.backing.join("d/c"), b"c").unwrap();
        let fs = disk.mount();
        std::fs::remove_file(disk.mnt.join("a")).unwrap();
        std::fs::remove_dir_all(disk.mnt.join("d")).unwrap();
        fsync(&disk.mnt);
        std::fs::remove_file(disk.mnt.join("b")).unwrap();
        assert!(!disk.mnt.join("b").exists());
        fs.power_cut();
        assert_eq!(read(&disk.backing.join("a")), None);
        assert!(!disk.backing.join("d").exists());
        assert_eq!(read(&disk.backing.join("b")).unwrap(), b"b");
    }

    #[test]
    fn a_cut_fails_every_later_operation_with_eio() {
        let disk = Disk::new();
        let fs = disk.mount();
        let mut f = File::create(disk.mnt.join("f")).unwrap();
        f.sync_all().unwrap();
        fsync(&disk.mnt);
        fs.cut_after(fs.ops() + 2);
        f.write_all(b"one").unwrap();
        assert!(!fs.is_cut());
        f.write_all(b"two").unwrap();
        assert!(fs.is_cut());
        let eio = |r: std::io::Result<()>| r.unwrap_err().raw_os_error() == Some(5);
        assert!(eio(f.write_all(b"three")));
        assert!(eio(f.sync_all()));
        assert!(eio(File::create(disk.mnt.join("g")).map(drop)));
        assert!(eio(std::fs::create_dir(disk.mnt.join("d"))));
        assert!(eio(std::fs::rename(disk.mnt.join("f"), disk.mnt.join("h"))));
        let log = fs.log();
        assert_eq!(
            log,
            [Op::Create, Op::Fsync, Op::FsyncDir, Op::Write, Op::Write]
        );
        drop(f);
        fs.power_cut();
        assert_eq!(read(&disk.backing.join("f")).unwrap(), b"");
    }

    #[test]
    fn a_clean_unmount_keeps_links_modes_and_times() {
        let disk = Disk::new();
        let fs = disk.mount();
        let mnt = &disk.mnt;
        std::fs::create_dir_all(mnt.join("a/b")).unwrap();
        std::fs::write(mnt.join("a/b/f"), b"data").unwrap();
        std::fs::hard_link(mnt.join("a/b/f"), mnt.join("a/hard")).unwrap();
        std::os::unix::fs::symlink("b/f", mnt.join("a/soft")).unwrap();
        rustix::fs::mknodat(
            CWD,
            mnt.join("fifo"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        std::fs::set_permissions(mnt.join("a/b/f"), PermissionsExt::from_mode(0o640)).unwrap();
        let mtime = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        File::options()
            .write(true)
            .open(mnt.join("a/b/f"))
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::write(mnt.join("a/g"), b"replaced").unwrap();
        std::fs::write(mnt.join("a/h"), b"replacing").unwrap();
        std::fs::rename(mnt.join("a/h"), mnt.join("a/g")).unwrap();
        let noreplace = rustix::fs::renameat_with(
            CWD,
            mnt.join("a/g"),
            CWD,
            mnt.join("a/hard"),
            rustix::fs::RenameFlags::NOREPLACE,
        );
        assert_eq!(noreplace, Err(rustix::io::Errno::EXIST));
        assert_eq!(std::fs::metadata(mnt.join("a/hard")).unwrap().nlink(), 2);
        fs.unmount_keeping_all();

        for root in [&disk.backing, mnt] {
            let fs = (root == mnt).then(|| disk.mount());
            let f = std::fs::metadata(root.join("a/b/f")).unwrap();
            assert_eq!(f.permissions().mode() & 0o777, 0o640);
            assert_eq!(f.modified().unwrap(), mtime);
            assert_eq!(f.nlink(), 2);
            assert_eq!(
                std::fs::metadata(root.join("a/hard")).unwrap().ino(),
                f.ino()
            );
            assert_eq!(
                std::fs::read_link(root.join("a/soft")).unwrap(),
                Path::new("b/f")
            );
            assert_eq!(read(&root.join("a/soft")).unwrap(), b"data");
            assert_eq!(read(&root.join("a/g")).unwrap(), b"replacing");
            assert_eq!(read(&root.join("a/h")), None);
            let fifo = std::fs::symlink_metadata(root.join("fifo")).unwrap();
            assert!(fifo.file_type().is_fifo());
            if let Some(fs) = fs {
                fs.unmount_keeping_all();
            }
        }
    }

    #[test]
    fn a_killed_writer_leaves_only_what_it_synced() {
        let disk = Disk::new();
        let fs = disk.mount();
        fs.cut_after(120);
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("i=0; while :; do i=$((i+1)); echo $i > f$i; sync f$i; sync .; done")
            .current_dir(&disk.mnt)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !fs.is_cut() {
            assert!(
                std::time::Instant::now() < deadline,
                "no cut: {:?}",
                fs.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        fs.power_cut();
        let mut found: Vec<u32> = std::fs::read_dir(&disk.backing)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let i: u32 = e.file_name().to_str().unwrap()[1..].parse().unwrap();
                assert_eq!(
                    std::fs::read(e.path()).unwrap(),
                    format!("{i}\n").as_bytes()
                );
                i
            })
            .collect();
        found.sort();
        assert!(found.len() > 5, "{found:?}");
        assert_eq!(found, (1..=found.len() as u32).collect::<Vec<_>>());
    }

    #[test]
    fn a_mount_still_in_use_is_detached_and_can_be_mounted_again() {
        let disk = Disk::new();
        let fs = disk.mount();
        let mut f = File::create(disk.mnt.join("f")).unwrap();
        fsync(&disk.mnt);
        fs.power_cut();
        assert_eq!(read(&disk.backing.join("f")).unwrap(), b"");
        let fs = disk.mount();
        let err = f.write_all(b"late").unwrap_err();
        assert!(matches!(err.raw_os_error(), Some(5) | Some(107)), "{err}");
        std::fs::write(disk.mnt.join("f"), b"again").unwrap();
        drop(f);
        fs.unmount_keeping_all();
        assert_eq!(read(&disk.backing.join("f")).unwrap(), b"again");
    }

    const ROWS: i64 = 20;

    /// Inserts rows one per transaction into a WAL database on a new mount until the power is
    /// cut `cut` operations into the inserts (never if None), then reboots. Returns the rows
    /// whose commit returned, the rows found after the reboot, and how many operations the
    /// inserts took.
    fn sqlite_run(synchronous: &str, cut: Option<u64>) -> (Vec<i64>, Vec<i64>, u64) {
        let disk = Disk::new();
        let db = disk.mnt.join("catalog.db");
        let fs = disk.mount();
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 8;
             CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL);",
        )
        .unwrap();
        conn.execute_batch(&format!("PRAGMA synchronous = {synchronous}"))
            .unwrap();
        assert!(
            disk.mnt.join("catalog.db-shm").exists(),
            "the WAL index is mmapped"
        );
        let start = fs.ops();
        if let Some(n) = cut {
            fs.cut_after(start + n);
        }
        let mut committed = Vec::new();
        for id in 0..ROWS {
            match conn.execute("INSERT INTO t VALUES (?1, zeroblob(3000))", [id]) {
                Ok(_) => committed.push(id),
                Err(_) => break,
            }
        }
        let ops = fs.ops() - start;
        drop(conn);
        fs.power_cut();
        let fs = disk.mount();
        let conn = Connection::open(&db).unwrap();
        let found = conn
            .prepare("SELECT id FROM t ORDER BY id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<Vec<i64>, _>>()
            .unwrap();
        drop(conn);
        fs.unmount_keeping_all();
        (committed, found, ops)
    }

    #[test]
    fn sqlite_wal_with_full_sync_keeps_every_committed_row_at_any_cut() {
        let (committed, found, ops) = sqlite_run("FULL", None);
        assert_eq!((committed.len(), &found), (ROWS as usize, &committed));
        let mut interrupted = 0;
        for n in 0..ops {
            let (committed, found, _) = sqlite_run("FULL", Some(n));
            let k = committed.len();
            assert!(
                found == committed || found == (0..=k as i64).collect::<Vec<_>>(),
                "cut after {n} of {ops}: committed {committed:?}, found {found:?}"
            );
            interrupted += usize::from(k < ROWS as usize);
        }
        assert!(interrupted > ops as usize / 2, "{interrupted} of {ops}");
    }

    #[test]
    fn sqlite_wal_without_sync_loses_committed_rows() {
        let (committed, found, _) = sqlite_run("OFF", None);
        assert_eq!(committed.len(), ROWS as usize);
        assert!(found.len() < committed.len(), "{found:?}");
    }
}
