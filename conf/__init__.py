"""sr-lightning's Hydra configs; a module so that an installed wheel reads them as pkg://sr_lightning.conf."""
