"""The op families the op tests were written for, by name: each test module checks every op of
its family against an independent reference (test_package checks that the families together are
exactly tracer.core.OPS, so a new op cannot go untested).  A step of an op in steps (bce_terms,
softmax_exp, …) is checked like any op, and its gradient with the op it is a step of."""

from tracer.core import OPS

BASIC = ("adam_m", "adam_step", "adam_v", "add", "add_mul", "bce", "bce_grad", "bce_terms", "bias_correct",
         "broadcast", "copy", "div", "exp_half", "exp_half_grad", "increment", "kl", "kl_logvar_grad", "kl_terms",
         "leaky_relu", "leaky_relu_grad", "linear", "matmul", "matmul_nt", "matmul_tn", "mul", "neg_ln",
         "neg_ln1m", "neg_mean_ln", "neg_mean_ln1m", "neg_mean_ln1m_grad", "neg_mean_ln_grad", "one", "relu",
         "relu_grad", "sgd", "sigmoid", "sigmoid_grad", "sub", "sum", "sum_all", "sum_cols", "sum_rows")  # test_ops
LANGUAGE = ("affine", "causal_softmax", "causal_softmax_exp", "col_dot", "concat_cols", "cosine", "embed", "embed_grad", "gelu",
            "gelu_grad", "nearest", "normalize", "normalize_grad_mu", "normalize_grad_var", "normalize_grad_x",
            "pad_cols", "pos_encoding", "row_mean", "row_mean_grad", "row_var", "row_var_grad_mu",
            "row_var_grad_x", "rsqrt", "slice_cols", "softmax", "softmax_exp", "softmax_grad", "xent", "xent_grad",
            "xent_terms")  # test_lm_ops
DENSE = ("bce_mean", "bce_mean_grad", "half_sse", "half_sse_grad", "mse", "mse_grad", "soft_xent", "soft_xent_terms",
         "tanh", "tanh_grad")  # test_mlp
UPSCALE = tuple(f"upscale_{m}_{f}{g}" for m in ("nearest", "bilinear") for f in (2, 4) for g in ("", "_grad"))  # test_upscale
GENERATION = ("append_row", "argmax", "cumsum", "divide", "fill_masks", "sample", "stack_rows", "take_rows",
              "top_ids", "top_values")  # test_generate
SEQUENCE = ("add_products", "concat_rows", "linear2", "mask_ids", "mask_positions", "masked_mean",
            "masked_mean_grad", "mean", "mean_grad", "nll", "nll_grad", "norms", "pad_rows", "slice_rows")  # test_seq_ops
POOL = ("avg_pool", "avg_pool_grad")  # test_pool
# diffusion: the schedule, the noising, the reverse step
DIFFUSION = ("denoise", "linear_schedule", "noise_strip", "one_minus", "pick", "reverse_step", "running_product",
             "sqrt", "to_signed")  # test_diffusion_ops
# flow: a coupling's exp(s), the log-determinants' sum, −mean log p(x), log N(z; 0, I), the inverse
FLOW = ("add_n", "coupling_inverse", "exp", "exp_grad", "log_normal", "log_normal_grad", "log_normal_terms",
        "neg_mean", "neg_mean_grad")  # test_flow

# the PyTorch front end: PyTorch's layouts (x·Wᵀ + b, aᵀ, reshape), losses and optimizer steps
TORCH = ("bce_logits_mean", "bce_logits_mean_grad", "bce_logits_sum", "bce_logits_sum_grad", "bce_logits_terms",
         "decoupled_decay", "gelu_erf", "gelu_erf_grad", "linear_nt", "ln", "log_softmax", "log_softmax_grad",
         "minus", "momentum", "neg", "neg_pick", "neg_pick_grad", "power", "power_grad", "quotient", "quotient_grad",
         "reshape", "soft_nll", "soft_nll_grad", "sse", "sse_grad", "transpose", "weight_decay")  # test_torch_ops

FAMILIES = {"basic": BASIC, "language": LANGUAGE, "dense": DENSE, "upscale": UPSCALE, "pool": POOL,
            "generation": GENERATION, "sequence": SEQUENCE, "diffusion": DIFFUSION, "flow": FLOW,
            "torch": TORCH}


def ops_of(family) -> dict:
    """The family's ops by name, from the one registry."""
    return {name: OPS[name] for name in family}
