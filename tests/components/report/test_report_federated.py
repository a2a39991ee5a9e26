"""The report's "Federated learning" section: setup, summary, clients, figures, faults."""

import re

import pytest

from components.report import ReportData, write_report
from components.report.federated_figures import (
    accuracy_per_round_figure,
    bytes_per_round_figure,
    client_accuracy_figure,
)
from components.report.federated_section import NO_FAULTS, federated_section
from components.report.figure_set import FigureSet

INLINE_PNG = re.compile(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"')
FIGURES = {"federated_accuracy", "federated_bytes", "federated_client_accuracy"}


def _rounds(sent: int, received: int, accuracies, wall_s: float) -> list[dict]:
    return [
        {
            "round": r,
            "sampled": [0, 1, 2],
            "participants": [0, 1, 2],
            "bytes_sent": {"0": sent, "1": sent, "2": sent},
            "bytes_received": {"0": received, "1": received, "2": received},
            "accuracy": accuracy,
            "wall_s": wall_s,
        }
        for r, accuracy in enumerate(accuracies)
    ]


def _federated() -> dict:
    faults = [
        {"round": 1, "client": 2, "kind": "dropped", "reason": "actor died: RayActorError"},
        {"round": 1, "client": 1, "kind": "rejected", "reason": "non-finite values in <w>"},
    ]
    return {
        "partition": "disjoint_classes",
        "alpha": None,
        "num_clients": 3,
        "rounds": 2,
        "fraction": 1.0,
        "local_epochs": 1,
        "clients": [
            {"client": 0, "samples": 250, "classes": [0, 1]},
            {"client": 1, "samples": 240, "classes": [2, 3]},
            {"client": 2, "samples": 260, "classes": [4, 5, 6]},
        ],
        "strategies": {
            "prototypes": {
                "final_accuracy": 0.89,
                "client_accuracy": {"0": 0.97, "1": 0.85, "2": 0.88},
                "rounds": _rounds(100, 300, [0.81, 0.89], 0.12),
                "events": [],
            },
            "fedavg": {
                "final_accuracy": 0.42,
                "client_accuracy": {"0": 0.5, "1": None, "2": 0.3},
                "rounds": _rounds(7000, 7000, [None, 0.42], 0.5),
                "events": faults,
            },
        },
    }


def _report_data(federated=None, continual=None) -> ReportData:
    return ReportData(
        title="federated",
        run_id="run-fl",
        headline={"accuracy": 0.89},
        metrics={"accuracy": 0.89},
        history=[],
        config_yaml="federated:\n  rounds: 2\n",
        meta={"seed": 0},
        data_meta={"row_counts": {"train": 750}},
        explanations=None,
        class_names=[str(k) for k in range(7)],
        feature_shape=(64,),
        federated=federated,
        continual=continual,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple:
    """The report with faults, written once: (folder, page, federated section)."""
    folder = tmp_path_factory.mktemp("federated")
    page = write_report(folder, _report_data(_federated())).read_text(encoding="utf-8")
    return folder, page, _section(page)


def _section(page: str) -> str:
    return re.search(r"<section><h2>Federated learning</h2>.*?</section>", page, re.S).group(0)


def _table_after(section: str, heading: str) -> str:
    return re.search(
        rf'<h3>{heading}</h3>(?:<p>[^<]*</p>)?<div class="table-scroll">(<table>.*?</table>)',
        section,
    ).group(1)


def test_section_describes_setup_strategies_and_clients(rendered):
    _, page, section = rendered
    assert page.index("<h2>Headline</h2>") < page.index("<h2>Federated learning</h2>")
    assert page.index("<h2>Federated learning</h2>") < page.index("<h2>Data</h2>")
    assert "3 clients, data partition: disjoint classes" in section
    assert "2 rounds" in section and "ceil(1.0000 x clients)" in section
    assert "Hendryx et al. 2021" in section and "McMahan et al. 2017" in section
    assert "Li et al. 2020" not in section  # FedProx was not run
    clients = _table_after(section, "Clients")
    assert '<td class="num">2</td><td class="num">260</td><td>4, 5, 6</td>' in clients


def test_summary_table_has_accuracy_bytes_time_and_fault_counts(rendered):
    section = rendered[2]
    summary = _table_after(section, "Strategies")
    for column in ("final accuracy", "total bytes", "mean wall s per round", "dropped"):
        assert f"<th>{column}" in summary
    # prototypes: 3 clients x 300 received, 3 x 100 sent per round, 2 rounds
    prototypes = re.search(r"<tr[^>]*><td>prototypes</td>(.*?)</tr>", summary).group(1)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", prototypes)
    assert cells == ["0.8900", "900", "300", "2400", "0.1200", "0", "0"]
    fedavg = re.search(r"<tr><td>fedavg</td>(.*?)</tr>", summary).group(1)
    assert re.findall(r"<td[^>]*>([^<]*)</td>", fedavg)[-2:] == ["1", "1"]
    assert '<tr class="highlight"><td>prototypes</td>' in summary  # best final accuracy


def test_fault_table_names_strategy_round_client_and_reason(rendered):
    section = rendered[2]
    faults = section.split("<h3>Faults</h3>")[1]
    assert "2 client update(s) did not reach the merge: 1 dropped, 1 rejected." in faults
    rows = re.findall(r"<tr><td>([^<]*)</td><td[^>]*>([^<]*)</td><td[^>]*>([^<]*)</td>", faults)
    assert rows == [("fedavg", "1", "2"), ("fedavg", "1", "1")]
    assert "actor died: RayActorError" in faults
    assert "non-finite values in &lt;w&gt;" in faults  # escaped
    assert NO_FAULTS not in faults


def test_no_faults_says_so(tmp_path):
    strategies = {"fedavg": {"final_accuracy": 0.5, "rounds": [], "events": []}}
    html = federated_section({"partition": "iid", "strategies": strategies}, FigureSet(tmp_path))
    assert f"<h3>Faults</h3><p>{NO_FAULTS}</p>" in html


def test_figures_are_written_and_inlined(rendered):
    folder, _, section = rendered
    pngs = {p.stem: p.read_bytes() for p in (folder / "figures").glob("federated_*.png")}
    assert set(pngs) == FIGURES
    assert all(png[:4] == b"\x89PNG" for png in pngs.values())
    assert len(INLINE_PNG.findall(section)) == len(FIGURES)


def test_figures_draw_one_series_per_strategy_with_log_bytes():
    strategies = _federated()["strategies"]
    accuracy = accuracy_per_round_figure(strategies).axes[0]
    assert [line.get_label() for line in accuracy.lines] == ["prototypes", "fedavg"]
    assert list(accuracy.lines[1].get_xdata()) == [1.0]  # the round without accuracy is skipped
    bytes_axis = bytes_per_round_figure(strategies).axes[0]
    assert bytes_axis.get_yscale() == "log"
    assert list(bytes_axis.lines[0].get_ydata()) == [1200.0, 1200.0]
    bars = client_accuracy_figure(strategies).axes[0]
    assert [t.get_text() for t in bars.get_xticklabels()] == ["0", "1", "2"]
    assert len(bars.patches) == 5  # fedavg has no accuracy for client 1
    empty = {"s": {"rounds": [], "client_accuracy": {}}}
    assert accuracy_per_round_figure(empty) is None
    assert bytes_per_round_figure(empty) is None
    assert client_accuracy_figure(empty) is None


def test_minimal_federated_renders_setup_and_faults_only(tmp_path):
    html = federated_section({"partition": "dirichlet", "alpha": 0.5}, FigureSet(tmp_path))
    assert "Dirichlet(alpha = 0.5000)" in html
    assert "<h3>Strategies</h3>" not in html and "<h3>Clients</h3>" not in html
    assert NO_FAULTS in html
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("federated", [None, {}])
def test_section_is_empty_without_data(tmp_path, federated):
    assert federated_section(federated, FigureSet(tmp_path)) == ""
    page = write_report(tmp_path, _report_data(federated)).read_text(encoding="utf-8")
    assert "<h2>Federated learning</h2>" not in page
    assert not list((tmp_path / "figures").glob("federated_*.png"))


def test_setup_names_a_robust_aggregation_rule(tmp_path):
    setup = {"partition": "iid", "aggregation": "krum", "byzantine": 1}
    html = federated_section(setup, FigureSet(tmp_path))
    assert "merge client weights by Krum (Blanchard et al. 2017)" in html
    assert "robust to 1 attacking client(s)" in html
    plain = federated_section({"partition": "iid", "aggregation": "mean"}, FigureSet(tmp_path))
    assert "merge client weights by" not in plain  # the mean is the default, said nowhere
