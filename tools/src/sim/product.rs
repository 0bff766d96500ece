//! [`Consensus`] for kvik's Raft core, [`raftlog::raft::RawNode`].

use raftlog::raft::{
    ConfChange, ConfState, Config, Entry, Faults, HardState, Message, MessageBody, RawNode, Role,
    Start,
};

use super::core::{Consensus, CoreParams, CoreReady, CoreStatus};

/// The Raft group id the simulated cluster uses.
const GROUP: u64 = 1;

/// kvik's Raft core, as the simulator drives it.
pub struct Product {
    raw: RawNode,
}

fn config(id: u64, params: &CoreParams) -> Config {
    let mut cfg = Config::new(id, GROUP);
    cfg.election_ticks = params.election_ticks as u32;
    cfg.heartbeat_ticks = params.heartbeat_ticks as u32;
    cfg.pre_vote = params.pre_vote;
    cfg.check_quorum = params.check_quorum;
    cfg.seed = params.seed;
    cfg.inflight_msgs_max = params.inflight_msgs_max;
    cfg.msg_bytes_max = params.msg_bytes_max;
    cfg.faults = Faults {
        skip_log_up_to_date_check: params.skip_log_up_to_date_check,
        commit_previous_term_by_count: params.commit_previous_term_by_count,
    };
    cfg
}

impl Consensus for Product {
    type Msg = Message;

    const FORWARDS: bool = true;

    fn bootstrap(id: u64, voters: &[u64], params: &CoreParams) -> Product {
        let start = Start::Bootstrap {
            voters: voters.to_vec(),
            contexts: Vec::new(),
        };
        let raw = RawNode::new(config(id, params), start).expect("bootstrap");
        Product { raw }
    }

    fn restart(
        id: u64,
        _voters: &[u64],
        hard_state: HardState,
        entries: Vec<Entry>,
        params: &CoreParams,
    ) -> Product {
        // The state machine starts empty (applied 0), so the configuration
        // as of the applied index is the empty one: the founding members'
        // `AddVoter` entries are applied again from the log.
        let start = Start::Restart {
            hard_state,
            conf: ConfState::default(),
            snapshot: None,
            entries,
        };
        let raw = RawNode::new(config(id, params), start).expect("restart");
        Product { raw }
    }

    fn tick(&mut self) {
        self.raw.tick();
    }

    fn step(&mut self, msg: Message) -> Result<(), String> {
        self.raw.step(msg).map_err(|e| e.to_string())
    }

    fn msg_to(msg: &Message) -> u64 {
        msg.to
    }

    fn msg_idempotent(msg: &Message) -> bool {
        !matches!(msg.body, MessageBody::Propose { .. })
    }

    fn propose(&mut self, data: Vec<u8>) -> Result<(), String> {
        self.raw.propose(data).map_err(|e| e.to_string())
    }

    fn apply_conf_change(&mut self, data: &[u8]) -> Result<(), String> {
        let cc = ConfChange::decode(data).map_err(|e| format!("{e:?}"))?;
        self.raw.apply_conf_change(&cc);
        Ok(())
    }

    fn read_index(&mut self, ctx: u64) {
        self.raw.read_index(ctx);
    }

    fn transfer_leader(&mut self, to: u64) {
        self.raw.transfer_leader(to);
    }

    fn report_unreachable(&mut self, to: u64) {
        self.raw.report_unreachable(to);
    }

    fn ready(&mut self) -> Option<CoreReady<Message>> {
        if !self.raw.has_ready() {
            return None;
        }
        let rd = self.raw.ready();
        Some(CoreReady {
            hard_state: rd.hard_state,
            entries: rd.entries,
            snapshots: usize::from(rd.snapshot.is_some()),
            committed: rd.committed,
            messages: rd.messages,
            read_states: rd.read_states.iter().map(|r| (r.index, r.ctx)).collect(),
        })
    }

    fn advance(&mut self) {
        self.raw.advance();
    }

    fn status(&self) -> CoreStatus {
        CoreStatus {
            term: self.raw.term(),
            is_leader: self.raw.role() == Role::Leader,
            leader: self.raw.leader().unwrap_or(0),
        }
    }

    fn commit(&self) -> u64 {
        self.raw.status().commit
    }
}
