"""One-hot metadata inputs (hamviz.metadata) on a small fixed table: known columns and rows."""
import numpy as np
import pandas as pd
import pytest

from hamviz.metadata import matrix_digest, metadata_matrix


def test_metadata_matrix_one_hot_with_missing_as_its_own_category():
    meta = pd.DataFrame({"age": [45.0, None, 5.0, 45.0], "sex": ["male", "unknown", "Female ", None],
                         "localization": ["back", "face", "", "back"], "dx": ["nv", "mel", "nv", "bkl"]})
    X, names = metadata_matrix(meta)
    assert names == ["age=5", "age=45", "age=missing", "sex=female", "sex=male", "sex=missing",
                     "site=back", "site=face", "site=missing"]
    expected = np.array([[0, 1, 0, 0, 1, 0, 1, 0, 0],
                         [0, 0, 1, 0, 0, 1, 0, 1, 0],
                         [1, 0, 0, 1, 0, 0, 0, 0, 1],
                         [0, 1, 0, 0, 0, 1, 1, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(X, expected)
    assert X.dtype == np.float32
    # the diagnosis is never read: another dx column gives the same matrix
    assert np.array_equal(metadata_matrix(meta.assign(dx="nv"))[0], X)
    assert matrix_digest(X, names) != matrix_digest(X[::-1], names)


def test_metadata_matrix_names_absent_columns():
    with pytest.raises(ValueError, match="no sex, localization column"):
        metadata_matrix(pd.DataFrame({"age": [1.0]}))
