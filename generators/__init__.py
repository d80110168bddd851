"""Virtual users: engines per protocol, population, load shapes, session scripts and stamps."""
