"""Chapter 4's activation-order section: the paper's numbers and the verdict the text shows."""

from __future__ import annotations

from skiplib.blocks.orders import ORDERS
from skiplib.chapters import ch04_resnets as ch
from skiplib.profile import get_profile


def final(**train_err: float) -> dict:
    return {o: {"train_err": train_err[o], "test_err": train_err[o] + 0.01} for o in ORDERS}


def test_every_order_has_a_label_and_the_papers_two_errors():
    assert set(ch.ORDER_LABELS) == set(ch.PAPER_ORDER_ERRORS) == set(ORDERS)
    # the paper's finding the chapter cites: full pre-activation best, BN after addition worst (ResNet-110)
    by_110 = sorted(ORDERS, key=lambda o: ch.PAPER_ORDER_ERRORS[o][0])
    assert by_110[0] == "full_preact" and by_110[-1] == "bn_after_add"


def test_verdict_groups_orders_by_their_gap_to_the_original():
    text = ch.order_verdict(final(original=0.60, bn_after_add=0.70, relu_before_add=0.62,
                                  relu_only_preact=0.50, full_preact=0.59))
    assert text == ("BN after addition ended more than 3% above the original unit's 60.0%; "
                    "ReLU-only pre-activation ended more than 3% below the original unit's 60.0%; "
                    "ReLU before addition and full pre-activation ended within 3% of the original unit's 60.0%.")


def test_table_has_one_row_per_order_with_ours_and_the_papers():
    table = ch.order_table(final(original=0.6, bn_after_add=0.7, relu_before_add=0.8, relu_only_preact=0.5,
                                 full_preact=0.4), depth=32)
    lines = table.splitlines()
    assert len(lines) == 2 + len(ORDERS)
    assert "training error, depth 32 (here)" in lines[0]
    assert lines[2 + ORDERS.index("full_preact")] == "| full pre-activation | 40.0% | 41.0% | 6.37 % | 5.46 % |"


def test_order_sizes_are_valid_depths_and_grow_with_the_profile():
    sizes = {p: ch.config(get_profile(p, device="cpu")) for p in ("smoke", "cpu", "gpu")}
    for cfg in sizes.values():
        assert (cfg["order_depth"] - 2) % 6 == 0 and (cfg["order_grad_depth"] - 2) % 6 == 0
    assert sizes["gpu"]["order_depth"] >= sizes["cpu"]["order_depth"] >= sizes["smoke"]["order_depth"]
