"""outreach: email campaigns for the NGO Coalition for the OP-ICESCR."""

__version__ = "0.1.0"
