//! Steps as swupd numbers them in JSON (`currentStep` of `totalSteps`, with swupd's
//! step names), and the counts of the step under way.

use std::time::Instant;

/// `reported` before the step's first progress event.
pub const NOT_STARTED: i64 = i64::MIN;

/// The step under way: what it counts, and what JSON has been told.
pub struct Step {
    pub name: String,
    /// Items to do, 0 when the step does not count items.
    pub items: u64,
    pub items_done: u64,
    /// Bytes to do, when known before the step runs.
    pub bytes_total: Option<u64>,
    pub bytes_done: u64,
    pub started: Instant,
    /// The last `stepCompletion` written (`NOT_STARTED`, -1, 0..=100).
    pub reported: i64,
    number: usize,
    id: String,
}

impl Step {
    /// A step of `items` items starting now.
    pub fn new(name: &str, items: u64) -> Step {
        Step {
            name: name.to_string(),
            items,
            items_done: 0,
            bytes_total: None,
            bytes_done: 0,
            started: Instant::now(),
            reported: NOT_STARTED,
            number: 0,
            id: String::new(),
        }
    }

    /// The step with its JSON number and name.
    pub fn numbered(mut self, number: usize, id: String) -> Step {
        self.number = number;
        self.id = id;
        self
    }

    /// Percent done: by bytes when their total is known, else by items; `None` when the
    /// step has nothing to count.
    pub fn percent(&self) -> Option<i64> {
        let (done, total) = match self.bytes_total {
            Some(t) if t > 0 => (self.bytes_done, t),
            _ if self.items > 0 => (self.items_done, self.items),
            _ => return None,
        };
        Some((done.min(total) as u128 * 100 / total as u128) as i64)
    }

    /// The byte total to show when it was not known: the bytes per item so far, times
    /// the items.
    pub fn estimated_bytes(&self) -> u64 {
        match self.items_done {
            0 => 0,
            n => (self.bytes_done as u128 * self.items as u128 / n as u128) as u64,
        }
    }

    /// swupd's progress event for this step at `completion`.
    pub fn progress(
        &self,
        total_steps: usize,
        completion: i64,
    ) -> Vec<(&'static str, serde_json::Value)> {
        super::progress(self.number, total_steps, completion, &self.id)
    }
}

/// The steps of a command, numbered from 1; a step the plan does not name is added after
/// the current one (swupd too grows the total when a step is unforeseen).
pub struct Steps {
    plan: Vec<String>,
    /// The number of the step under way, 0 before the first.
    current: usize,
}

impl Steps {
    /// The steps `section` goes through, in order.
    pub fn for_section(section: &str) -> Steps {
        let plan: &[&str] = match section {
            "update" => &[
                "download_fullfiles",
                "write_image",
                "update_files",
                "run_postupdate_scripts",
            ],
            "os-install" | "bundle-add" => &[
                "download_fullfiles",
                "install_files",
                "run_postupdate_scripts",
            ],
            "bundle-remove" => &["download_fullfiles", "remove_files"],
            "repair" | "verify" => &[
                "check_files_hash",
                "download_fullfiles",
                "fix_files",
                "run_postupdate_scripts",
            ],
            "diagnose" => &["check_files_hash"],
            _ => &[],
        };
        Steps {
            plan: plan.iter().map(|s| s.to_string()).collect(),
            current: 0,
        }
    }

    /// Moves to the step the library calls `name`: the steps passed over on the way (they
    /// had nothing to do) with their numbers, and the new step's number.
    pub fn enter(&mut self, section: &str, name: &str) -> (Vec<(usize, String)>, usize) {
        let id = step_id(section, name);
        let at = match self.plan[self.current..].iter().position(|s| *s == id) {
            Some(i) => self.current + i,
            None => {
                self.plan.insert(self.current, id);
                self.current
            }
        };
        let skipped = (self.current..at)
            .map(|i| (i + 1, self.plan[i].clone()))
            .collect();
        self.current = at + 1;
        (skipped, self.current)
    }

    /// How many steps there are.
    pub fn total(&self) -> usize {
        self.plan.len()
    }

    /// The name of step `number`.
    pub fn id(&self, number: usize) -> String {
        self.plan[number - 1].clone()
    }
}

/// swupd's name for one of the library's steps.
fn step_id(section: &str, name: &str) -> String {
    let id = match (name, section) {
        ("Downloading", _) => "download_fullfiles",
        ("Writing image", _) => "write_image",
        ("Installing", "update") => "update_files",
        ("Installing", "bundle-remove") => "remove_files",
        ("Installing", "repair" | "verify") => "fix_files",
        ("Installing", _) => "install_files",
        ("Checking" | "Looking", _) => "check_files_hash",
        ("Post-update", _) => "run_postupdate_scripts",
        _ => return name.to_lowercase().replace(' ', "_"),
    };
    id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_in_order_and_skipped_ones_are_passed_over() {
        let mut s = Steps::for_section("update");
        assert_eq!(s.enter("update", "Downloading"), (vec![], 1));
        let (skipped, n) = s.enter("update", "Installing");
        assert_eq!((skipped, n), (vec![(2, "write_image".to_string())], 3));
        assert_eq!(s.id(3), "update_files");
        // An unforeseen step comes after the current one and grows the total.
        assert_eq!(s.enter("update", "Reticulating"), (vec![], 4));
        assert_eq!((s.total(), s.id(4).as_str()), (5, "reticulating"));
        assert_eq!(s.enter("update", "Post-update"), (vec![], 5));
    }

    #[test]
    fn completion_goes_by_bytes_when_known_else_by_items() {
        let mut step = Step::new("Downloading", 4);
        assert_eq!(step.percent(), Some(0));
        step.items_done = 1;
        step.bytes_done = 100;
        assert_eq!((step.percent(), step.estimated_bytes()), (Some(25), 400));
        step.bytes_total = Some(1000);
        assert_eq!(step.percent(), Some(10));
        assert_eq!(Step::new("Writing image", 0).percent(), None);
    }
}
