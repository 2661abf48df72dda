"""The allowed values of the certify knobs, without importing scipy (params validation stays light
and runs where scipy is not installed). :mod:`eeoffload.certify` implements each of them.
"""

from __future__ import annotations

#: How the exits share the certified threshold: one threshold for every exit.
FAMILIES = ("shared",)
#: Multiple-testing procedure over the threshold grid.
PROCEDURES = ("fixed_sequence", "holm")
#: The p-value of one threshold's accuracy test.
P_VALUES = ("hoeffding_bentkus", "binomial")
