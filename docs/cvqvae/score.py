"""Swap scores and grids of a cvqvae (or other label model) checkpoint on unseen world faces (docs/cvqvae/README.md):
python docs/cvqvae/score.py RUN swaps.png [magnitude.png]"""
import sys, torch, json
import mien
from mien.control.swap import swap_scores_of, swap
from mien.models.checkpoint import training_world
from mien.report.grid import save_grid
ckpt, out = sys.argv[1], sys.argv[2]
model = mien.load(ckpt).eval()
world = training_world(ckpt, 600, 12345, model.config.image_size)
b = world.batch(range(600))
y = b["factors"]["glasses"]
g, w = (y == 1).nonzero()[:, 0], (y == 0).nonzero()[:, 0]
n = min(len(g), len(w), 100)
xg, xw = b["image"][g[:n]], b["image"][w[:n]]
with torch.no_grad():
    s = swap_scores_of(model, xg, xw, y_with=torch.ones(n), y_without=torch.zeros(n))
    pred = model.predict(b["image"])[:, 0]
    rec = model.reconstruct(b["image"][:64])
    r = swap(model, xg[:6], xw[:6], y_a=torch.ones(6), y_b=torch.zeros(6))
acc = ((pred == 1) & (y == 1)).sum() / (y == 1).sum(), ((pred == 0) & (y == 0)).sum() / (y == 0).sum()
res = {k: (float(v) if torch.is_tensor(v) or isinstance(v, float) else v) for k, v in s.items() if not torch.is_tensor(v) or v.numel() == 1}
res.update(bca=float((acc[0] + acc[1]) / 2), mse=float((rec - b["image"][:64]).pow(2).mean()), pairs=n)
print(json.dumps(res))
save_grid(torch.cat([xg[:6], r["a_rec"], r["a"], xw[:6], r["b_rec"], r["b"]]), out, nrow=6, scale=3)
if len(sys.argv) > 3 and model.feature_part is not None:
    from mien.control.swap import magnitude
    with torch.no_grad():
        m = magnitude(model, xg[:6], [0.0, 0.5, 1.0, 1.5, 2.0], y=torch.ones(6))
    save_grid(torch.cat([xg[:6], *m]), sys.argv[3], nrow=6, scale=3)
