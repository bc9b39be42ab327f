"""Files in and out: atomic writes, action sets, stimulus files and episode logs."""
