//! What the process launcher says about this process, read from the environment before MPI
//! exists: how many processes it started as one job, and which one this is. rbnn reads it to
//! refuse a build without MPI that was started as several ranks (each would train the whole run
//! alone, into the same run directory), and to initialise MPI only under a launcher, so that a
//! plain `rbnn train` never touches the MPI library.

/// One launcher's variables: the job's process count, this process's rank, its rank on its node.
struct Variables {
    size: &'static str,
    rank: &'static str,
    local_rank: &'static str,
}

/// The launchers rbnn recognises, in the order they are looked for.
const LAUNCHERS: [Variables; 4] = [
    // Open MPI's mpirun / mpiexec (also under Slurm, where it starts the ranks itself).
    Variables {
        size: "OMPI_COMM_WORLD_SIZE",
        rank: "OMPI_COMM_WORLD_RANK",
        local_rank: "OMPI_COMM_WORLD_LOCAL_RANK",
    },
    // MPICH and Intel MPI (Hydra), Cray PALS.
    Variables {
        size: "PMI_SIZE",
        rank: "PMI_RANK",
        local_rank: "MPI_LOCALRANKID",
    },
    // MVAPICH2.
    Variables {
        size: "MV2_COMM_WORLD_SIZE",
        rank: "MV2_COMM_WORLD_RANK",
        local_rank: "MV2_COMM_WORLD_LOCAL_RANK",
    },
    // Slurm's srun. SLURM_STEP_NUM_TASKS (not SLURM_NTASKS) because a batch script itself sees
    // the job's SLURM_NTASKS although it is one process; only srun's tasks see the step's count.
    Variables {
        size: "SLURM_STEP_NUM_TASKS",
        rank: "SLURM_PROCID",
        local_rank: "SLURM_LOCALID",
    },
];

/// This process as its launcher started it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Processes in the job.
    pub size: usize,
    /// This process's rank, 0..size.
    pub rank: usize,
    /// Its rank among the job's processes on this machine, when the launcher says.
    pub local_rank: Option<usize>,
    /// The variable the size was read from ("OMPI_COMM_WORLD_SIZE=2"), for messages.
    pub evidence: String,
}

/// The launch described by the first launcher whose size variable holds a number, read through
/// `var` (the environment in `detect`; a table in tests). None: not started by a launcher.
pub fn detect_with(var: impl Fn(&str) -> Option<String>) -> Option<Launch> {
    let number = |name: &str| var(name).and_then(|v| v.trim().parse::<usize>().ok());
    LAUNCHERS.iter().find_map(|l| {
        let size = number(l.size)?;
        Some(Launch {
            size,
            rank: number(l.rank).unwrap_or(0),
            local_rank: number(l.local_rank),
            evidence: format!("{}={size}", l.size),
        })
    })
}

/// The launch described by this process's environment.
pub fn detect() -> Option<Launch> {
    detect_with(|name| std::env::var(name).ok())
}

/// The message for a build without MPI started as several ranks.
pub fn needs_mpi_build(launch: &Launch) -> String {
    format!(
        "this rbnn was built without MPI support, but it was started as rank {} of {} processes \
         ({}): each would run alone instead of as one job (rbnn train: each would train the whole \
         run alone, into the same run directory). For \
         data-parallel training build it with the `mpi` feature (needs an MPI library and \
         libclang; on Debian/Ubuntu: apt-get install libopenmpi-dev openmpi-bin libclang-dev), \
         `cargo build --release --features mpi`, and start that binary with mpirun or srun (README: \
         \"Training on several GPUs\"); to train on one GPU, run rbnn train without mpirun",
        launch.rank, launch.size, launch.evidence
    )
}
