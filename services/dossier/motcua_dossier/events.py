"""The dossier service's event names and topic: spelled once, used everywhere."""

TOPIC = "motcua.dossier.v1"
SOURCE = "/motcua/dossier"
SUBMITTED = "vn.motcua.dossier.submitted.v1"
