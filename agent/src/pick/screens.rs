//! The screens the pick workflow shows: `protocol::link::Screen` models, text cut to fit.

use floorhand_protocol::link::{Level, PickPrompt, ScanTarget, Screen, fit};

use super::{Batch, Need, Open, Picker, REASONS, Step};

pub(super) fn message(level: Level, text: &str) -> Screen {
    Screen::Message {
        level,
        text: fit(text),
    }
}

pub(super) fn quantity(prompt: &str, value: u32, max: u32) -> Screen {
    Screen::Quantity {
        prompt: fit(prompt),
        value,
        max,
    }
}

fn scan(target: ScanTarget, hint: &str) -> Screen {
    Screen::Scan {
        target,
        hint: fit(hint),
    }
}

/// "Put back N of X at LOC": the description is cut first, so the count and the location
/// always show.
pub(super) fn put_back_text(qty: u32, description: &str, location: &str) -> String {
    const ROOM: usize = 48;
    let fixed = format!("Put back {qty} of  at {location}");
    let room = ROOM.saturating_sub(fixed.len());
    let desc = if description.len() <= room {
        description.to_string()
    } else {
        let mut cut = String::new();
        for c in description.chars() {
            if cut.len() + c.len_utf8() + '…'.len_utf8() > room {
                break;
            }
            cut.push(c);
        }
        cut.push('…');
        cut
    };
    format!("Put back {qty} of {desc} at {location}")
}

/// The prompt for what the batch still needs.
pub(super) fn need(need: Need, t: &Open, batch: &Batch) -> Screen {
    let desc = &t.task.description;
    let remaining = t.task.remaining();
    match need {
        Need::Item | Need::More => scan(
            ScanTarget::Item,
            &format!("{}/{} {desc}", batch.count, remaining),
        ),
        Need::Lot => scan(ScanTarget::Lot, desc),
        Need::Serial => scan(ScanTarget::Serial, desc),
        Need::Expiry => scan(ScanTarget::Expiry, desc),
        Need::Tote => scan(ScanTarget::Tote, desc),
        Need::Confirm => message(
            Level::Info,
            &format!("Enter: confirm {} {desc}", batch.count),
        ),
    }
}

impl Picker {
    pub(super) fn step_screen(&self) -> Screen {
        let done_n = self.done.total();
        let done = u16::try_from(done_n).unwrap_or(u16::MAX);
        let total = u16::try_from(done_n.saturating_add(self.path_left())).unwrap_or(u16::MAX);
        match &self.step {
            Step::LoggedOut => scan(ScanTarget::Badge, "Scan your badge"),
            Step::NoTasks => message(Level::Info, "No tasks: wait for the next wave"),
            Step::WaveDone => {
                let (picked, short) = (self.done.picked, self.done.short);
                Screen::WaveDone {
                    picked: u16::try_from(picked).unwrap_or(u16::MAX),
                    short: u16::try_from(short).unwrap_or(u16::MAX),
                }
            }
            Step::GoTo { task_id, typed } => match (self.task(*task_id), typed) {
                (_, Some(v)) => quantity("Check code", *v, 99),
                (Some(t), None) => Screen::Pick(PickPrompt {
                    location: fit(&t.task.location),
                    item: fit(&t.task.description),
                    qty: u16::try_from(t.task.remaining()).unwrap_or(u16::MAX),
                    done,
                    total,
                }),
                (None, None) => message(Level::Error, "Task gone"),
            },
            Step::Pick {
                task_id,
                batch,
                typed,
            } => match (self.task(*task_id), typed) {
                (Some(t), Some(v)) => quantity("Quantity", *v, t.task.remaining()),
                (Some(t), None) => need(self.need(t, batch), t, batch),
                (None, _) => message(Level::Error, "Task gone"),
            },
            Step::Reasons { selected, .. } => Screen::Reasons {
                options: REASONS.iter().map(|(_, m)| *m).collect(),
                selected: u8::try_from(*selected).unwrap_or(0),
            },
            Step::PutBack(job) => message(
                Level::Warning,
                &put_back_text(job.qty(), &job.description, &job.location),
            ),
        }
    }
}
