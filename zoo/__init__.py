"""keras_sysid's shipped pretrained models, one folder per entry (see ``keras_sysid.zoo``).

Installed as the package ``keras_sysid_zoo`` so that entries are found with
``importlib.resources`` from a wheel as well as from a checkout.
"""
