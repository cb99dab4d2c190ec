"""One LightningModule per method, on the shared :class:`SRModule` base."""
