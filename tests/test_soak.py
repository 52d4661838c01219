"The soak tool, bounded to seconds: mixed traffic against a real service, every answer as expected, a report with windows and the memory trend."
import json, sys

import pytest

from conftest import ROOT


@pytest.mark.slow  # a real server under a few seconds of mixed traffic
def test_soak_runs_mixed_traffic_and_reports_windows_and_memory(trained_exp, tmp_path):
    sys.path.insert(0, str(ROOT/'tools'))
    import soak
    out = tmp_path/'soak.json'
    r = soak.main(['--exp', str(trained_exp[0]), '--minutes', '0.25', '--clients', '2', '--window', '5', '--out', str(out)])
    assert r['verdict'] == 'pass' and r['errors'] == 0 and r['requests'] > 10, {k: v for k, v in r.items() if k != 'windows'}
    assert len(r['windows']) >= 3 and all(w['rss_mb'] > 50 for w in r['windows'])
    kinds = set().union(*(w['latency_ms'] for w in r['windows']))
    assert {'single', 'combo', 'bad', 'search', 'health'} <= kinds  # the mix reached every route it names
    assert set(r['memory']) >= {'slope_mb_per_min', 'fitted_growth_mb', 'rss_mb_start', 'rss_mb_end'}
    assert json.loads(out.read_text())['requests'] == r['requests'] and out.with_suffix('.png').stat().st_size > 5000
    with pytest.raises(SystemExit, match='soak failed'):  # a bound that cannot be met fails the run
        soak.main(['--exp', str(trained_exp[0]), '--minutes', '0.1', '--clients', '1', '--window', '3', '--out', str(tmp_path/'strict.json'),
                   '--max-growth-mb', '-1000'])
