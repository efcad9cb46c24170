"""The training script timed by ``runtime_watch.py``: a small CPU classifier with
BatchNorm, a shuffling DataLoader, a validation loader, a few epochs. Deliberately
cheap per batch (the watch's cost is per batch and per pass, so small steps are its
worst case)."""
import argparse

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def train(epochs=4, samples=4096, batch_size=32, width=64, workers=0):
    torch.manual_seed(0)
    teacher = torch.randn(32, 10)
    x = torch.randn(samples + 512, 32)
    y = (x @ teacher).argmax(1)
    train_set = TensorDataset(x[:samples], y[:samples])
    val_set = TensorDataset(x[samples:], y[samples:])
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=workers)
    val_loader = DataLoader(val_set, batch_size=256)
    model = nn.Sequential(nn.Linear(32, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(epochs):
        model.train()
        for xb, yb in train_loader:
            loss = nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            correct = sum((model(xb).argmax(1) == yb).sum().item() for xb, yb in val_loader)
    return correct / len(val_set)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"val acc {train(args.epochs, workers=args.workers):.3f}")
