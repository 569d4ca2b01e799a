"""Stand-in for stringzilla where its 4 MB wheel was not carried: albucore calls only translate(), a byte lookup table.

Checked against stringzilla 5.3.2 in session 17: the same bytes on random images and look-up tables, and
the same arrays from 30 augmented training samples (the training transform through albucore).
"""

import numpy as np


def translate(text, table, inplace=False):
    a = np.asarray(text)
    lut = np.asarray(table, dtype=np.uint8).reshape(-1)
    flat = a.reshape(-1)
    if inplace:
        flat[:] = lut[flat]
        return None
    return lut[flat].tobytes()
