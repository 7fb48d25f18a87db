"""carebridge core: flows, engine, store, services, web app and command line."""
