//! Two nodes under concurrent commands: one consistent world and a gap-free, ordered journal.

mod common;

use std::collections::HashMap;

use esc_testbed::sshd::{Event, Mode, What};

#[test]
fn concurrent_commands_on_both_nodes_keep_state_and_journal_consistent() {
    let sim = common::ha();
    const THREADS_PER_NODE: usize = 3;
    const ROUNDS: usize = 4;
    let cmds = [
        "op_mode set --mode=maintenance",
        "status --v",
        "op_mode set --mode=operation",
        "op_mode show",
    ];
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for node in ["esc-a", "esc-b"] {
            for t in 0..THREADS_PER_NODE {
                let n = sim.node(node);
                handles.push(s.spawn(move || {
                    for r in 0..ROUNDS {
                        let c = cmds[(t + r) % cmds.len()];
                        let o = n.escadm(c).unwrap();
                        assert_eq!(o.exit, 0, "{node}: escadm {c}: {o:?}");
                        if c.starts_with("op_mode set") {
                            assert_eq!(o.lines().len(), 2, "{o:?}");
                        }
                    }
                }));
            }
        }
        for h in handles {
            h.join().unwrap();
        }
    });
    let j = sim.journal().unwrap();
    // Gap-free, strictly ordered.
    for (i, e) in j.entries().iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
    }
    assert!(j.entries().windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
    // Every command journaled exactly once, per node.
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for e in j.commands(None) {
        assert!(matches!(e.what, What::Command { exit: 0, .. }));
        *per_node.entry(e.node.clone()).or_default() += 1;
    }
    assert_eq!(per_node["esc-a"], THREADS_PER_NODE * ROUNDS);
    assert_eq!(per_node["esc-b"], THREADS_PER_NODE * ROUNDS);
    // Mode changes form one chain (no lost update): each starts where the last one ended,
    // and the final mode (the same on both nodes) is where the chain ends.
    let changes = j.mode_changes();
    assert!(!changes.is_empty());
    let mut mode = Mode::Operation;
    for (_, from, to) in &changes {
        assert_eq!(*from, mode, "{changes:?}");
        assert_ne!(from, to);
        mode = *to;
    }
    assert_eq!(sim.node("esc-a").state().unwrap().mode, mode);
    assert_eq!(sim.node("esc-b").state().unwrap().mode, mode);
    assert!(j.failovers().is_empty());
    assert!(
        !j.events()
            .any(|(_, e)| matches!(e, Event::ServicesStopped | Event::RoleChanged { .. }))
    );
}

#[test]
fn concurrent_stops_of_both_nodes_leave_exactly_the_roles_the_order_implies() {
    // Race `stop` on both nodes: whichever the journal says stopped first decides whether a
    // failover happened; state and journal must agree.
    for _ in 0..3 {
        let sim = common::ha();
        std::thread::scope(|s| {
            let a = s.spawn(|| sim.node("esc-a").escadm("stop").unwrap());
            let b = s.spawn(|| sim.node("esc-b").escadm("stop").unwrap());
            assert_eq!(a.join().unwrap().exit, 0);
            assert_eq!(b.join().unwrap().exit, 0);
        });
        let j = sim.journal().unwrap();
        let stops = j.stops();
        assert_eq!(stops.len(), 2);
        let failovers = j.failovers();
        let b_role = sim.node("esc-b").state().unwrap().role;
        if stops[0] == "esc-a" {
            assert_eq!(failovers, [("esc-a".to_string(), "esc-b".to_string())]);
            assert_eq!(b_role, esc_testbed::sshd::Role::Master);
        } else {
            assert!(failovers.is_empty());
            assert_eq!(b_role, esc_testbed::sshd::Role::Backup);
        }
    }
}
