"""A synthetic data set the size and shape of MovieLens-1M.

1,000,209 ratings of 3,706 items by 6,040 users, with skewed (lognormal)
numbers of ratings per user and per item, as in the real data, and

    rating = clip(round(3.6 + u_user + v_item + e), 1, 5)

with u ~ N(0, 0.4²), v ~ N(0, 0.5²), e ~ N(0, 0.9²). The model fitted to it is
``rating ~ 1 + (1 | user) + (1 | item)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N_ROWS = 1_000_209
N_USERS = 6_040
N_ITEMS = 3_706
FORMULA = "rating ~ 1 + (1 | user) + (1 | item)"


def generate(
    seed: int = 20261126, n_rows: int = N_ROWS, n_users: int = N_USERS, n_items: int = N_ITEMS
) -> pd.DataFrame:
    """Ratings with user and item as categoricals (every level present)."""
    rng = np.random.default_rng(seed)
    # skewed activity: each user and item drawn with lognormal weight
    wu = rng.lognormal(0.0, 1.0, n_users)
    wi = rng.lognormal(0.0, 1.3, n_items)
    users = np.concatenate([np.arange(n_users), rng.choice(n_users, n_rows - n_users, p=wu / wu.sum())])
    items = np.concatenate([np.arange(n_items), rng.choice(n_items, n_rows - n_items, p=wi / wi.sum())])
    rng.shuffle(items)
    u = rng.normal(0.0, 0.4, n_users)
    v = rng.normal(0.0, 0.5, n_items)
    e = rng.normal(0.0, 0.9, n_rows)
    rating = np.clip(np.round(3.6 + u[users] + v[items] + e), 1, 5)
    return pd.DataFrame(
        {
            "rating": rating,
            "user": pd.Categorical.from_codes(users, [f"u{k}" for k in range(n_users)]),
            "item": pd.Categorical.from_codes(items, [f"i{k}" for k in range(n_items)]),
        }
    )


if __name__ == "__main__":
    df = generate()
    print(df.describe(include="all"))
    print(df["user"].value_counts().describe())
    print(df["item"].value_counts().describe())
