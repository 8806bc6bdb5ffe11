"""Stage 4: the event store: tables, engine set-up, events and migrations."""
