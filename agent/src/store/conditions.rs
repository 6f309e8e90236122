//! SQL conditions shared by several of the store's files.

/// SQL condition on `waves`: no task of the wave needs the picker any more.
pub(super) const WAVE_IS_DONE: &str = "NOT EXISTS (SELECT 1 FROM tasks
    WHERE tasks.wave_id = waves.wave_id
      AND tasks.state IN ('open', 'in_progress', 'skipped', 'put_back', 'surplus'))";
