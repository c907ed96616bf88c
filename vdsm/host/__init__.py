"""Host facts for the engine: capabilities, statistics, hardware identity."""
