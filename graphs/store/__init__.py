"""Where tracks, task records, audio and annotations are kept."""

import logging

# Alembic says at INFO which plugins it set up when imported and which dialect it found each time a
# store opens (every replica, every test); the store says itself when a migration runs.
logging.getLogger("alembic").setLevel(logging.WARNING)
