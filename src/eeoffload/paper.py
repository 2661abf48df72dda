"""The constants of the paper (Pacheco, Couto and Simeone, 2021), named once.

Settings it states, the two decision rules it compares, and the numbers it reports in the text,
each with its section, so that results can be put beside them.
"""

from __future__ import annotations

CONVENTIONAL = "conventional"  # T = 1 on every exit (the conventionally trained network)
CALIBRATED = "calibrated"  # temperature scaling fitted per exit on the validation split (IV-A)
CALIBRATIONS = (CONVENTIONAL, CALIBRATED)

N_TRAIN, N_VAL, N_TEST = 45_000, 3_000, 7_000  # section III
#: The paper-length schedule: BranchyNet's (experiment_alex_cifar10.py) trunk 50 + joint 100 epochs;
#: the paper names no epochs.
TRUNK_EPOCHS, JOINT_EPOCHS = 50, 100
UPLINK_MBPS = 18.8  # section IV-E, Wi-Fi uplink of [7]
BATCH_SIZE = 512  # sections IV-D, IV-E: test batches for outage and missed deadline
DEADLINE_P_TAR = (0.75, 0.825, 0.85)  # Fig. 5 (a)-(c)
#: p_tar values the headline tables report: the deadline panels plus Fig. 4's 0.875.
HEADLINE_P_TAR = (0.75, 0.825, 0.85, 0.875)
#: p_tar values of the trajectory table's outage columns (issue: 0.85 / 0.875 / 0.9).
TRAJECTORY_P_TAR = (0.85, 0.875, 0.9)

#: What the paper reports in its text, for the README's side-by-side table: (where, statement).
REPORTED = {
    "outage_calibrated_below_0.875": ("IV-D, Fig. 4", "calibrated outage is zero for every p_tar < 0.875"),
    "outage_conventional_at_0.875": ("IV-D, Fig. 4", "conventional outage close to 0.4 at p_tar = 0.875"),
    "missed_conventional_0.85": ("IV-E, Fig. 5(c)", "conventional cannot get below about 0.7 missed deadlines "
                                                    "at p_tar = 0.85"),
    "missed_calibrated_0.85": ("IV-E, Fig. 5(c)", "calibrated reaches 0.1 for a large enough t_tar"),
    "acc_device_calibrated": ("IV-C, Fig. 3(b)", "calibrated accuracy on device always >= or close to p_tar"),
    "p_device_lower": ("IV-B, Fig. 2", "calibration lowers the probability of classifying on the device"),
}
