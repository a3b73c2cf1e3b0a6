"""The live loop: events in through POST /events, journaled, applied to the online state."""
