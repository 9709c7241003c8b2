"""A cluster as a deployment: turns run through their stages as streams of frames."""
