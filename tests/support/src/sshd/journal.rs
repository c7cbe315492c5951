//! The simulation's journal, typed: commands, state changes and northbound requests in order.

use super::{Event, JournalEntry, Mode, What};

/// The journal: every command, state change and northbound request, in the order they
/// happened (by `seq`), across the nodes of one simulation.
#[derive(Clone, Debug)]
pub struct Journal(pub Vec<JournalEntry>);

impl Journal {
    pub fn entries(&self) -> &[JournalEntry] {
        &self.0
    }

    /// The state-change events, with their entries.
    pub fn events(&self) -> impl Iterator<Item = (&JournalEntry, &Event)> {
        self.0.iter().filter_map(|e| match &e.what {
            What::Event(ev) => Some((e, ev)),
            _ => None,
        })
    }

    /// (from, to) of every failover, in order.
    pub fn failovers(&self) -> Vec<(String, String)> {
        self.events()
            .filter_map(|(_, ev)| match ev {
                Event::Failover { from, to } => Some((from.clone(), to.clone())),
                _ => None,
            })
            .collect()
    }

    /// (node, from, to) of every operation-mode change, in order.
    pub fn mode_changes(&self) -> Vec<(String, Mode, Mode)> {
        self.events()
            .filter_map(|(e, ev)| match ev {
                Event::ModeChanged { from, to } => Some((e.node.clone(), *from, *to)),
                _ => None,
            })
            .collect()
    }

    /// Nodes in the order their services were stopped.
    pub fn stops(&self) -> Vec<String> {
        self.events()
            .filter(|(_, ev)| matches!(ev, Event::ServicesStopped))
            .map(|(e, _)| e.node.clone())
            .collect()
    }

    /// The escadm commands (of one node, or all), in order.
    pub fn commands(&self, node: Option<&str>) -> Vec<&JournalEntry> {
        self.0
            .iter()
            .filter(|e| matches!(e.what, What::Command { .. }))
            .filter(|e| node.is_none_or(|n| e.node == n))
            .collect()
    }

    /// `seq` of the first event on `node` matching `pred`.
    pub fn first_seq(&self, node: &str, pred: impl Fn(&Event) -> bool) -> Option<u64> {
        self.events()
            .find(|(e, ev)| e.node == node && pred(ev))
            .map(|(e, _)| e.seq)
    }
}
