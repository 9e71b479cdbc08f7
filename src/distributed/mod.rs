//! Data-parallel training across processes: the ranks of a job started by mpirun or srun, the
//! fixed-order sum of the gradient arena over them, and the checks that they still train the
//! same model.
//!
//! A `Cluster` is one rank's view of the job. Without the cargo feature `mpi` (and in an MPI
//! build started without a launcher) it is a single rank and nothing here touches MPI; with it,
//! under mpirun or srun, it wraps MPI (`transport`). Rank 0 is the root: it alone writes the run
//! directory, evaluates and prints progress.
//!
//! Failure: an error on one rank is printed with the rank's name and ends the whole job
//! (MPI_Abort; `Cluster::finish`). An error every rank raises together from the same gathered
//! data (a check across ranks) is an `Agreed` error: rank 0 prints it once and every rank ends
//! normally with status 1.

pub mod bench;
pub mod launcher;
pub mod reduce;
#[cfg(feature = "mpi")]
mod transport;

use anyhow::{bail, Result};
use std::fmt;

/// An error raised by every rank at once from the same gathered data: printed by rank 0 only.
#[derive(Debug)]
pub struct Agreed(pub String);

impl fmt::Display for Agreed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Agreed {}

/// Whether MPI support was compiled in (cargo feature `mpi`).
pub const MPI_BUILT_IN: bool = cfg!(feature = "mpi");

/// One rank's view of the job.
pub struct Cluster {
    rank: usize,
    size: usize,
    local_rank: usize,
    host: String,
    /// How the job was started ("mpirun, OMPI_COMM_WORLD_SIZE=2"), for messages.
    launcher: String,
    #[cfg(feature = "mpi")]
    mpi: Option<std::cell::RefCell<transport::Mpi>>,
}

impl Cluster {
    /// A job of one process (no MPI).
    pub fn single() -> Cluster {
        Cluster {
            rank: 0,
            size: 1,
            local_rank: 0,
            host: String::new(),
            launcher: String::new(),
            #[cfg(feature = "mpi")]
            mpi: None,
        }
    }

    /// The job this process belongs to, from its environment: a single rank unless a launcher
    /// started several (then MPI is initialised, or, in a build without MPI, an error says how
    /// to build one).
    pub fn from_environment() -> Result<Cluster> {
        let Some(launch) = launcher::detect() else {
            return Ok(Cluster::single());
        };
        Self::from_launch(launch)
    }

    #[cfg(not(feature = "mpi"))]
    fn from_launch(launch: launcher::Launch) -> Result<Cluster> {
        if launch.size > 1 {
            bail!(launcher::needs_mpi_build(&launch));
        }
        Ok(Cluster::single())
    }

    #[cfg(feature = "mpi")]
    fn from_launch(launch: launcher::Launch) -> Result<Cluster> {
        let mpi = transport::Mpi::init()?;
        if mpi.size != launch.size {
            bail!(
                "the launcher started {} processes ({}) but MPI sees {}: this MPI library cannot \
                 attach to that launcher (under Slurm, try srun --mpi=pmix or Open MPI's own \
                 mpirun)",
                launch.size,
                launch.evidence,
                mpi.size
            );
        }
        Ok(Cluster {
            rank: mpi.rank,
            size: mpi.size,
            local_rank: mpi.local_rank,
            host: mpi.host.clone(),
            launcher: launch.evidence,
            mpi: Some(std::cell::RefCell::new(mpi)),
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Rank among the job's processes on this machine (picks the adapter).
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// Rank 0: the one that writes, evaluates and prints.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// "rank 1 of 2 on node7", for messages.
    pub fn describe(&self) -> String {
        match self.host.is_empty() {
            true => format!("rank {} of {}", self.rank, self.size),
            false => format!("rank {} of {} on {}", self.rank, self.size, self.host),
        }
    }

    /// How the job was started, for the start-up line.
    pub fn launcher(&self) -> &str {
        &self.launcher
    }

    /// Replaces `data` (the same length on every rank) by (sum over ranks, in rank order) times
    /// `scale`. One rank: `data * scale`.
    pub fn sum_in_rank_order(&self, data: &mut [f32], scale: f32) -> Result<()> {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            return mpi.borrow_mut().sum_in_rank_order(data, scale);
        }
        let mut out = vec![0.0; data.len()];
        reduce::sum_in_rank_order(data, 1, scale, &mut out);
        data.copy_from_slice(&out);
        Ok(())
    }

    /// Every rank's bytes, in rank order (one rank: its own).
    pub fn all_gather_bytes(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            return mpi.borrow().all_gather_bytes(mine);
        }
        vec![mine.to_vec()]
    }

    /// True on every rank when `flag` is true on some rank.
    pub fn any(&self, flag: bool) -> bool {
        if self.size == 1 {
            return flag;
        }
        self.all_gather_bytes(&[flag as u8])
            .iter()
            .any(|b| b.first() == Some(&1))
    }

    /// Rank 0's value of a setup step that only rank 0 performs (opening the run directory),
    /// given to every rank; its failure becomes an `Agreed` error on every rank.
    pub fn from_root(&self, root: Option<Result<String>>) -> Result<String> {
        let mine = match &root {
            Some(Ok(v)) => format!("ok{v}"),
            Some(Err(e)) => format!("er{e:#}"),
            None => String::new(),
        };
        if self.size == 1 {
            return match root {
                Some(r) => r,
                None => bail!("from_root: the single rank is the root and must give a value"),
            };
        }
        let all = self.all_gather_bytes(mine.as_bytes());
        let text = String::from_utf8_lossy(&all[0]).into_owned();
        match text.split_at(2.min(text.len())) {
            ("ok", v) => Ok(v.to_string()),
            (_, e) => Err(Agreed(e.to_string()).into()),
        }
    }

    /// Checks that every rank holds the same named items (bytes, usually hashes); an `Agreed`
    /// error naming `what`, each differing rank and the items that differ from rank 0's.
    pub fn check_same(&self, what: &str, items: &[(String, Vec<u8>)]) -> Result<()> {
        if self.size == 1 {
            return Ok(());
        }
        let mine = serde_json::to_vec(items)?;
        let all: Vec<Vec<(String, Vec<u8>)>> = self
            .all_gather_bytes(&mine)
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap_or_default())
            .collect();
        match describe_differences(what, &all) {
            None => Ok(()),
            Some(message) => Err(Agreed(message).into()),
        }
    }

    /// `error`, marked as raised by every rank at once when there are several (see `Agreed`):
    /// for an error every rank meets from the same data.
    pub fn agreed(&self, error: anyhow::Error) -> anyhow::Error {
        match self.size {
            1 => error,
            _ => Agreed(format!("{error:#}")).into(),
        }
    }

    /// Ends a rank's command: one rank passes `result` through. In a job of several ranks an
    /// `Agreed` error is returned on rank 0 only (the others end quietly with status 1), and any
    /// other error is printed with this rank's name and ends the whole job (MPI_Abort).
    pub fn finish(&self, result: Result<i32>) -> Result<i32> {
        let error = match result {
            Ok(status) => return Ok(status),
            Err(e) if self.size == 1 => return Err(e),
            Err(e) => e,
        };
        if error.chain().any(|c| c.is::<Agreed>()) {
            return match self.is_root() {
                true => Err(error),
                false => Ok(1),
            };
        }
        eprintln!(
            "error ({}): {error:#}\nstopping all {} ranks",
            self.describe(),
            self.size
        );
        self.abort(1)
    }

    /// Ends every rank of the job at once.
    fn abort(&self, code: i32) -> ! {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            mpi.borrow().abort(code);
        }
        std::process::exit(code)
    }
}

/// The message of `Cluster::check_same` for the items of every rank (in rank order): None when
/// every rank holds rank 0's items, else `what`, each differing rank and its differing items.
pub fn describe_differences(what: &str, per_rank: &[Vec<(String, Vec<u8>)>]) -> Option<String> {
    let mut problems = Vec::new();
    for (rank, theirs) in per_rank.iter().enumerate().skip(1) {
        let differing = differing_items(&per_rank[0], theirs, rank);
        if !differing.is_empty() {
            problems.push(format!("rank {rank}: {}", differing.join(", ")));
        }
    }
    if problems.is_empty() {
        return None;
    }
    Some(format!(
        "{what} differ between ranks (every rank must train the same model): {}",
        problems.join("; ")
    ))
}

/// "lr (rank 0: 0.1; rank 1: 0.2)" for each item that differs between rank 0's `root` and rank
/// `rank`'s `other` (values shown when they are short text, as config fields are; else the name).
fn differing_items(
    root: &[(String, Vec<u8>)],
    other: &[(String, Vec<u8>)],
    rank: usize,
) -> Vec<String> {
    let show = |v: Option<&Vec<u8>>| -> Option<String> {
        match v {
            None => Some("missing".into()),
            Some(b) => std::str::from_utf8(b)
                .ok()
                .filter(|s| s.len() <= 80 && s.chars().all(|c| !c.is_control()))
                .map(str::to_string),
        }
    };
    let mut names: Vec<&String> = root.iter().map(|(n, _)| n).collect();
    for (n, _) in other {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let find = |list: &[(String, Vec<u8>)], name: &str| {
        list.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    };
    names
        .into_iter()
        .filter_map(|name| {
            let (a, b) = (find(root, name), find(other, name));
            if a == b {
                return None;
            }
            Some(match (show(a.as_ref()), show(b.as_ref())) {
                (Some(a), Some(b)) => format!("{name} (rank 0: {a}; rank {rank}: {b})"),
                _ => name.clone(),
            })
        })
        .collect()
}

/// A 64-bit FNV-1a hash of `bytes`, as 8 bytes: what ranks compare instead of whole tensors.
pub fn fingerprint(bytes: &[u8]) -> Vec<u8> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.to_le_bytes().to_vec()
}
