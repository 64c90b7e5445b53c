# A small VAE in PyTorch on one shipped digit: `tracer run torch --module torch_vae.py`.
# tracer runs this file after torch.manual_seed(--seed) and reads what it defines:
# model, data = (x, y), loss_fn, and optionally optimizer and iterations.
import torch
import torch.nn.functional as F
from torch import nn

from tracer.data import mnist


class VAE(nn.Module):
    def __init__(self, pixels=196, hidden=8, latent=2):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(pixels, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, pixels), nn.Sigmoid())

    def forward(self, x):
        h = self.encoder(x)
        mu, logvar = self.mu(h), self.logvar(h)
        eps = torch.randn_like(mu)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.decoder(z), mu, logvar


def loss_fn(output, x):
    x_hat, mu, logvar = output
    recon = F.binary_cross_entropy(x_hat, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return recon + kl


model = VAE().double()  # float64, as the workbook computes: every number equals PyTorch's
pixels, _ = mnist.load_digit(0)  # the first shipped digit, 28 × 28 in [0, 1]
x = F.avg_pool2d(torch.tensor(pixels).view(1, 1, 28, 28), 2).view(1, 196)  # averaged to 14 × 14: one row
data = (x, x)  # a VAE reconstructs its input
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
iterations = 4
