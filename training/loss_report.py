"""Loss curves a person would rather look at than read, and a one-line verdict."""
from __future__ import annotations

from pathlib import Path


def overfitting_verdict(history: dict[str, list[float]], window: int = 3) -> str:
    """One line: did validation loss rise while training loss fell?

    Compares the mean of the last ``window`` epochs with the best earlier value,
    so one noisy epoch does not raise an alarm.
    """
    loss, val = history.get("loss", []), history.get("val_loss", [])
    if len(loss) < 2 * window or len(val) < 2 * window:
        return f"Too few epochs ({len(loss)}) to judge overfitting."
    recent_train = sum(loss[-window:]) / window
    recent_val = sum(val[-window:]) / window
    best_val = min(val[:-window])
    train_fell = recent_train < sum(loss[:window]) / window
    if train_fell and recent_val > best_val * 1.05:
        return (f"Overfitting: validation loss rose to {recent_val:.4f} (best {best_val:.4f}) "
                f"while training loss fell to {recent_train:.4f}; the best weights are kept.")
    return (f"No overfitting seen: validation loss {recent_val:.4f} "
            f"(best {min(val):.4f}), training loss {recent_train:.4f}.")


def plot_losses(history: dict[str, list[float]], path: Path) -> Path:
    """Training and validation loss per epoch, saved as a PNG at ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    epochs = range(1, len(history.get("loss", [])) + 1)
    ax.plot(epochs, history.get("loss", []), label="training loss")
    if history.get("val_loss"):
        ax.plot(range(1, len(history["val_loss"]) + 1), history["val_loss"], label="validation loss")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss")
    ax.set_title(overfitting_verdict(history).split(":")[0])
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
