const $ = id => document.getElementById(id);
let photo = null, img = null;
$('key').value = sessionStorage.getItem('pillsnap-key') || '';
$('drop').onclick = () => $('file').click();
$('drop').ondragover = e => { e.preventDefault(); $('drop').classList.add('over'); };
$('drop').ondragleave = () => $('drop').classList.remove('over');
$('drop').ondrop = e => { e.preventDefault(); $('drop').classList.remove('over'); if (e.dataTransfer.files[0]) choose(e.dataTransfer.files[0]); };
$('file').onchange = e => { if (e.target.files[0]) choose(e.target.files[0]); };
function choose(f) {
  photo = f; img = new Image();
  img.onload = () => draw(null); img.src = URL.createObjectURL(f);
  $('go').disabled = false; $('status').textContent = f.name;
}
function esc(s) { return String(s ?? '').replace(/[&<>"']/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c])); }
function draw(result) {
  const c = $('canvas'), scale = Math.min(1, 640 / img.width);
  c.width = img.width * scale; c.height = img.height * scale;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0, c.width, c.height);
  if (!result) return;
  g.lineWidth = 3; g.font = '13px system-ui';
  result.pills.forEach((p, i) => {
    const [x1, y1, x2, y2] = p.box.map(v => v * scale), top = p.candidates[0];
    g.strokeStyle = '#ff8c00'; g.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const t = `${i + 1}. ${top.dl_name || top.k_code} ${(top.confidence * 100).toFixed(0)}%`;
    g.fillStyle = '#ff8c00'; g.fillRect(x1, Math.max(0, y1 - 18), g.measureText(t).width + 8, 18);
    g.fillStyle = '#000'; g.fillText(t, x1 + 4, Math.max(13, y1 - 5));
  });
}
function show(r) {
  const rows = p => p.candidates.map((c, j) => `<tr><td>${j + 1}</td><td>${esc(c.k_code)}</td><td>${esc(c.dl_name)}</td>
    <td>${(c.confidence * 100).toFixed(1)}%${c.in_set ? ' <span class="inset" title="in the candidate set">✓</span>' : ''}</td><td>${esc(c.dl_company)}</td><td>${esc([c.print_front, c.print_back].filter(Boolean).join(' / '))}</td>
    <td>${esc((c.edi_codes || []).join(', '))}</td></tr>`).join('');
  let h = `<p><b>${r.mode}</b> mode — ${r.pills.length} pill(s), ${r.timing_ms.total.toFixed(0)} ms</p>`;
  if (r.hints.combo_recommended) h += `<p class="hint">${esc(r.hints.reason)}</p>`;
  h += r.pills.map((p, i) => `<div class="pill"><h3>Pill ${i + 1}</h3><table><tr><th>#</th><th>K-code</th><th>name</th>
    <th>confidence</th><th>company</th><th>imprint</th><th>EDI</th></tr>${rows(p)}</table></div>`).join('');
  if (r.pills.some(p => p.candidates.some(c => c.in_set !== undefined)))
    h += '<p class="note"><span class="inset">✓</span> in the pill\'s candidate set: together they hold the true drug at the set coverage the model was calibrated for (pipeline.set_coverage, 90 % by default)</p>';
  $('results').innerHTML = h;
}
$('go').onclick = async () => {
  const key = $('key').value.trim(), mode = document.querySelector('input[name=mode]:checked').value;
  if ($('remember').checked) sessionStorage.setItem('pillsnap-key', key); else sessionStorage.removeItem('pillsnap-key');
  const body = new FormData(); body.append('image', photo);
  $('go').disabled = true; $('status').textContent = 'identifying…'; $('status').className = '';
  try {
    const res = await fetch(`predict?pipeline=${mode}&top_k=${encodeURIComponent($('topk').value)}`, {method: 'POST', headers: {'X-API-Key': key}, body});
    const r = await res.json();
    if (!res.ok) throw new Error(`${res.status}: ${typeof r.detail === 'string' ? r.detail : JSON.stringify(r.detail)}`);
    draw(r); show(r); $('status').textContent = `done (request ${res.headers.get('X-Request-ID')})`;
  } catch (e) { $('status').textContent = e.message; $('status').className = 'err'; }
  $('go').disabled = false;
};
