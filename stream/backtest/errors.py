"""The one error of the backtest package."""

from __future__ import annotations

__all__ = ["BacktestError"]


class BacktestError(ValueError):
    """Input the backtest cannot score: a bad label file, window, series or detection.

    The message names the file (and line) or the series key, the field and the value.
    """
