//! Planted faults are caught by the checkers.

use super::net::Net;

/// Member 1 leads and commits X with member 2 while 3 is cut off; then 1
/// crashes and 3 campaigns. Returns the net.
fn stale_candidate(fault: bool) -> Net {
    let mut net = Net::new(3, |c| {
        c.check_quorum = false;
        c.pre_vote = false;
        c.faults.skip_log_up_to_date_check = fault;
    });
    assert!(net.tick_until_leader(1));
    net.isolate(3);
    net.propose(1, b"X");
    net.ticks(1);
    assert_eq!(net.applied_data(2), vec![b"X".to_vec()], "X committed");
    net.crash(1);
    net.heal();
    let won = net.tick_until_leader(3);
    assert_eq!(won, fault, "only the planted bug lets the stale log win");
    net.ticks(2);
    net
}

#[test]
fn log_up_to_date_check_keeps_stale_candidates_out() {
    let net = stale_candidate(false);
    net.assert_safe();
}

#[test]
fn skipped_log_up_to_date_check_is_caught() {
    let net = stale_candidate(true);
    assert!(
        !net.violations.is_empty(),
        "a stale leader overwrote a committed entry unnoticed"
    );
    let text = net.violations.join("\n");
    assert!(
        text.contains("committed entry") || text.contains("state machine safety"),
        "{text}"
    );
}
