"""The credit-risk domain: the request contract, feature engineering, the model matrix and the
business decision. Pure functions of data; imports nothing else of this project, so training,
serving, batch scoring and tests all share it."""
