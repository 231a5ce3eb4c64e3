import torch

from llmnotes import GPT, GPTConfig
from llmnotes.landscape import filter_normalized_direction, loss_surface


def test_direction_rows_match_weight_row_norms():
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("nano"))
    d = filter_normalized_direction(model, torch.Generator().manual_seed(1))
    w = model.transformer.h[0].mlp.c_fc.weight
    torch.testing.assert_close(d["transformer.h.0.mlp.c_fc.weight"].norm(dim=1), w.norm(dim=1), rtol=1e-4, atol=1e-6)
    assert torch.all(d["transformer.h.0.mlp.c_fc.bias"] == 0)


def test_surface_centre_is_the_model_loss_and_weights_restored():
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("nano"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    idx = torch.randint(0, 512, (2, 17))
    a, b, L = loss_surface(model, idx, span=0.5, steps=5)
    with torch.no_grad():
        centre = torch.nn.functional.cross_entropy(model(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten())
    assert a[2] == 0 and abs(L[2, 2] - centre) < 1e-5
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_surface_matches_the_plain_loop():
    """The in-place update gives the losses of θ* + αδ + βη computed the plain way."""
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("nano"))
    idx = torch.randint(0, 512, (2, 17))
    alphas, _, L = loss_surface(model, idx, span=0.8, steps=3, seed=4)
    g = torch.Generator().manual_seed(4)
    delta, eta = filter_normalized_direction(model, g), filter_normalized_direction(model, g)
    origin = {k: v.detach().clone() for k, v in model.named_parameters()}
    for i, a in enumerate(alphas):
        for j, b in enumerate(alphas):
            probe = GPT(model.config)
            probe.load_state_dict({k: origin[k] + a * delta[k] + b * eta[k] for k in origin}, strict=False)
            with torch.no_grad():
                ref = torch.nn.functional.cross_entropy(probe(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten())
            assert abs(L[i, j] - ref) < 1e-4 * max(1.0, ref.item())
