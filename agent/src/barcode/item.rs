//! Rules over everything scanned for ONE item: required AIs, excluded AI pairs and an AI
//! scanned twice with different values. docs/dev/field-notes.md: "check the rule over everything
//! scanned from one item, not one barcode alone" — a case may carry its GTIN on one label
//! and its lot on another.

use super::ai;
use super::{BarcodeError, Element, Problem};

/// The AIs seen for one item, across all of its scans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemData {
    elements: Vec<Element>,
    /// A GTIN read from a retail symbol (EAN-13 ...) counts as AI 01.
    retail_gtin: bool,
}

impl ItemData {
    /// Adds the elements of one scan (and whether it was a retail GTIN symbol).
    pub fn add(&mut self, barcode: &super::Barcode) {
        self.elements.extend(barcode.elements.iter().cloned());
        self.retail_gtin |= barcode.retail.is_some();
    }

    /// The elements so far.
    pub fn elements(&self) -> &[Element] {
        &self.elements
    }

    /// Conflicts only: excluded pairs and repeated AIs with different values. Checked
    /// after every scan, since a later scan cannot repair them.
    pub fn conflicts(&self) -> Vec<BarcodeError> {
        conflicts(&self.elements, self.retail_gtin)
    }

    /// Every rule, including required AIs: checked when the item is complete.
    pub fn check(&self) -> Vec<BarcodeError> {
        let mut errors = self.conflicts();
        errors.extend(missing(&self.elements, self.retail_gtin));
        errors
    }
}

fn has(elements: &[Element], retail_gtin: bool, code: &str) -> bool {
    (code == "01" && retail_gtin) || elements.iter().any(|e| e.ai == code)
}

/// Excluded pairs and repeated AIs with different values.
pub fn conflicts(elements: &[Element], retail_gtin: bool) -> Vec<BarcodeError> {
    let mut errors = Vec::new();
    for (i, el) in elements.iter().enumerate() {
        let Some(def) = ai::by_code(&el.ai) else {
            continue;
        };
        for other in def.excludes {
            // Pairs listed both ways (01 and 02) are reported once.
            let mutual = ai::by_code(other).is_some_and(|o| o.excludes.contains(&el.ai.as_str()));
            if mutual && *other < el.ai.as_str() {
                continue;
            }
            if has(elements, retail_gtin, other) {
                errors.push(BarcodeError::new(
                    Some(&el.ai),
                    Some(el.pos),
                    Problem::Excludes {
                        other: (*other).to_string(),
                    },
                ));
            }
        }
        if let Some(first) = elements[..i]
            .iter()
            .find(|e| e.ai == el.ai && e.data != el.data)
        {
            errors.push(BarcodeError::new(
                Some(&el.ai),
                Some(el.pos),
                Problem::Repeated {
                    first: first.data.clone(),
                    second: el.data.clone(),
                },
            ));
        }
    }
    errors
}

/// Required AIs not present.
pub fn missing(elements: &[Element], retail_gtin: bool) -> Vec<BarcodeError> {
    let mut errors = Vec::new();
    for el in elements {
        let Some(def) = ai::by_code(&el.ai) else {
            continue;
        };
        for group in def.requires {
            if !group.iter().any(|code| has(elements, retail_gtin, code)) {
                errors.push(BarcodeError::new(
                    Some(&el.ai),
                    Some(el.pos),
                    Problem::Requires {
                        any_of: group.join(" or "),
                    },
                ));
            }
        }
    }
    errors
}
