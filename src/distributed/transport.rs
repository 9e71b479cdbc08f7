//! The MPI side of a cluster (cargo feature `mpi`, through rsmpi): initialisation, the ranks on
//! this machine, the gradient exchange (all-to-all + sum in rank order + all-gather), small
//! gathers for the checks across ranks, and MPI_Abort. Every call is made from the main thread.

use super::reduce;
use anyhow::{bail, Result};
use mpi::collective::CommunicatorCollectives;
use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Count;

pub struct Mpi {
    /// Finalises MPI when dropped.
    _universe: Universe,
    world: SimpleCommunicator,
    pub rank: usize,
    pub size: usize,
    /// Rank among the processes on this machine (MPI_COMM_TYPE_SHARED).
    pub local_rank: usize,
    pub host: String,
    /// Reused by every exchange: the chunk of every rank, and this rank's summed chunk.
    received: Vec<f32>,
    summed: Vec<f32>,
}

impl Mpi {
    /// Initialises MPI (it must not be yet).
    pub fn init() -> Result<Mpi> {
        // Funneled: the batcher and signal threads never call MPI.
        let Some((universe, _)) =
            mpi::initialize_with_threading(mpi::environment::Threading::Funneled)
        else {
            bail!("MPI was already initialised");
        };
        let world = universe.world();
        let local_rank = world.split_shared(world.rank()).rank() as usize;
        let host = mpi::environment::processor_name().unwrap_or_else(|_| "?".into());
        Ok(Mpi {
            rank: world.rank() as usize,
            size: world.size() as usize,
            local_rank,
            host,
            world,
            _universe: universe,
            received: Vec::new(),
            summed: Vec::new(),
        })
    }

    /// Replaces `data` (the same length on every rank) by the sum over ranks in rank order,
    /// times `scale` (see `reduce`).
    pub fn sum_in_rank_order(&mut self, data: &mut [f32], scale: f32) -> Result<()> {
        let (n, len) = (self.size, data.len());
        if len > Count::MAX as usize {
            bail!(
                "the gradient arena ({len} elements) is over MPI's count limit of {}",
                Count::MAX
            );
        }
        let chunks: Vec<_> = (0..n).map(|r| reduce::chunk(len, n, r)).collect();
        let counts: Vec<Count> = chunks.iter().map(|c| c.len() as Count).collect();
        let displs: Vec<Count> = chunks.iter().map(|c| c.start as Count).collect();
        let mine = chunks[self.rank].len();
        self.received.resize(n * mine, 0.0);
        self.summed.resize(mine, 0.0);
        let recv_counts = vec![mine as Count; n];
        let recv_displs: Vec<Count> = (0..n).map(|r| (r * mine) as Count).collect();
        self.world.all_to_all_varcount_into(
            &Partition::new(&data[..], &counts[..], &displs[..]),
            &mut PartitionMut::new(&mut self.received[..], &recv_counts[..], &recv_displs[..]),
        );
        reduce::sum_in_rank_order(&self.received, n, scale, &mut self.summed);
        self.world.all_gather_varcount_into(
            &self.summed[..],
            &mut PartitionMut::new(data, &counts[..], &displs[..]),
        );
        Ok(())
    }

    /// Every rank's bytes, in rank order.
    pub fn all_gather_bytes(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        let n = self.size;
        // One byte more than the data: an empty byte slice's address is 0x1, which Open MPI
        // takes for MPI_IN_PLACE.
        let mut sent = mine.to_vec();
        sent.push(0);
        let mut lengths = vec![0 as Count; n];
        self.world
            .all_gather_into(&(sent.len() as Count), &mut lengths[..]);
        let displs: Vec<Count> = lengths
            .iter()
            .scan(0, |at, &l| {
                let d = *at;
                *at += l;
                Some(d)
            })
            .collect();
        let total = lengths.iter().map(|&l| l as usize).sum();
        let mut all = vec![0u8; total];
        self.world.all_gather_varcount_into(
            &sent[..],
            &mut PartitionMut::new(&mut all[..], &lengths[..], &displs[..]),
        );
        (0..n)
            .map(|r| {
                let start = displs[r] as usize;
                all[start..start + lengths[r] as usize - 1].to_vec()
            })
            .collect()
    }

    /// Ends every rank of the job (MPI_Abort) with `code`.
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
