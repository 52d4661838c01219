const $ = id => document.getElementById(id);
const T = {
  en: {tagline: 'identify oral medicines from a photo', drop: 'Drop a photo here or choose one', camera: 'Take a photo', single: 'single pill', combo: 'several pills (combo)',
       expect: 'Prescription (optional): K-codes, EDI codes or product names, comma-separated; "x2" after one for two (combo mode checks the tray)',
       checkword: 'Prescription check:', of: (f, e) => `${f} of ${e}`, left: s => `left over: pill ${s}`, unchecked: s => `not checked (unknown here): ${s}`, remember: 'remember for this tab', identify: 'Identify', search: 'Search',
       search_title: 'Search by what the pill shows', results_here: 'Results appear here.',
       notice: 'pillsnap suggests; it does not decide. Check every answer with a pharmacist before taking or giving a medicine.',
       mode: m => `${m} mode`, pills: n => `${n} pill(s)`, pill: 'Pill', name: 'name', confidence: 'confidence', company: 'company', imprint: 'imprint',
       shape: 'shape', colour: 'colour', sure: ['very likely', 'likely', 'possible', 'unsure'], unknown: 'Unknown — this pill looks like none of the drugs pillsnap knows. Ask a pharmacist.',
       read: m => `read on the pill: “${m}”`, expected: 'on the prescription', unexpected: m => `NOT on the prescription${m ? ' — it looks like ' + m : ''}`, identifying: 'identifying…', done: r => `done (request ${r})`,
       inset: 'in the pill\'s candidate set: together they hold the true drug at the set coverage the model was calibrated for (pipeline.set_coverage, 90 % by default)',
       found: n => `${n} drug(s) found`, score: 'match', unmatched: m => `not matched in the prescription: ${m}`,
       links: 'links', record: 'official record', image: 'reference image',
       notsure: b => `Not sure — it could be ${b}.`, other_side: 'Photograph the other side too', closer: 'Photograph the imprint closer and sharper',
       look: 'Photograph it in daylight on a plain ground', not_visible: 'A photo cannot tell them apart: check the package', none: 'Their records are alike: check the package',
       unrecorded: 'No record says how one of them looks: compare the pill with the photos they were enrolled from, and with its package',
       differ: 'they differ in', vs: ' vs ', fields: {print_front: 'front imprint', print_back: 'back imprint', line_front: 'front score line', line_back: 'back score line',
       mark_code_front: 'front mark', mark_code_back: 'back mark', drug_shape: 'shape', color_class1: 'colour', color_class2: 'second colour', leng_long: 'length',
       leng_short: 'width', thick: 'thickness', dl_name: 'name'},
       back: 'Add the other side of this pill', sides: 'both sides', wrong: 'This answer is wrong', right: 'the right drug, if you know it (K-code or name)', send: 'Send', kept: r => (r.photos ? `Your photo is kept ${r.days ? `for ${r.days} days` : 'until the operator deletes it'}, without location or phone details` : 'Only the answer and a fingerprint of the photo are kept, not the photo') + (r.reviewed ? '; a person reviews each report before it is used.' : '.'),
       thanks: id => `Thank you — report ${id} kept.`,
       fix: 'Wrong count? Tap a box to take it off; drag over a missed pill (or tap it, or its dashed box) to add one: the pills are identified again.',
       topk: 'candidates', key_ph: 'API key (X-API-Key)', q_ph: 'imprint, e.g. TQ 250', color_ph: 'colour: 노랑 / yellow', shape_ph: 'shape: 원형 / round',
       name_ph: 'name: 타이레놀 / Tylenol', form_ph: 'form: 필름코팅정 / 캡슐'},
  ko: {tagline: '사진으로 경구약을 식별합니다', drop: '사진을 여기에 끌어 놓거나 선택하세요', camera: '사진 찍기', single: '알약 하나', combo: '여러 알약 (combo)',
       expect: '처방 (선택): K-코드, EDI 코드 또는 제품명, 쉼표로 구분; 두 개면 뒤에 "x2" (여러 알약 모드에서 처방과 대조)',
       checkword: '처방 확인:', of: (f, e) => `${e}개 중 ${f}개`, left: s => `남는 알약: ${s}`, unchecked: s => `확인하지 못함 (모르는 약): ${s}`, remember: '이 탭에서 기억', identify: '식별', search: '검색',
       search_title: '알약에 보이는 것으로 찾기', results_here: '결과가 여기에 표시됩니다.',
       notice: 'pillsnap은 제안할 뿐 결정하지 않습니다. 약을 복용하거나 주기 전에 모든 답을 약사와 확인하세요.',
       mode: m => `${m} 모드`, pills: n => `알약 ${n}개`, pill: '알약', name: '이름', confidence: '확신도', company: '업체', imprint: '각인',
       shape: '모양', colour: '색', sure: ['매우 유력', '유력', '가능', '불확실'], unknown: '알 수 없음 — pillsnap이 아는 어떤 약과도 닮지 않았습니다. 약사에게 문의하세요.',
       read: m => `알약에서 읽은 글자: “${m}”`, expected: '처방에 있음', unexpected: m => `처방에 없음${m ? ' — ' + m + '와(과) 닮았습니다' : ''}`, identifying: '식별 중…', done: r => `완료 (요청 ${r})`,
       inset: '후보 집합에 속함: 모델이 보정된 포함률(pipeline.set_coverage, 기본 90 %)로 실제 약을 담습니다',
       found: n => `약 ${n}개 찾음`, score: '일치도', unmatched: m => `처방에서 찾지 못한 항목: ${m}`,
       links: '링크', record: '의약품안전나라', image: '낱알 사진',
       notsure: b => `확실하지 않음 — ${b} 중 하나일 수 있습니다.`, other_side: '뒷면도 찍어 주세요', closer: '각인이 잘 보이게 가까이 찍어 주세요',
       look: '밝은 곳, 단색 바탕에서 찍어 주세요', not_visible: '사진으로는 구별할 수 없습니다: 포장을 확인하세요', none: '기록이 같습니다: 포장을 확인하세요',
       unrecorded: '생김새 기록이 없는 약이 있습니다: 알약을 등록 사진, 포장과 비교해 보세요',
       differ: '다른 점:', vs: ' 대 ', fields: {print_front: '앞면 각인', print_back: '뒷면 각인', line_front: '앞면 분할선', line_back: '뒷면 분할선',
       mark_code_front: '앞면 마크', mark_code_back: '뒷면 마크', drug_shape: '모양', color_class1: '색', color_class2: '두 번째 색', leng_long: '장축',
       leng_short: '단축', thick: '두께', dl_name: '제품명'},
       back: '이 알약의 반대쪽 면 추가', sides: '양면', wrong: '이 답이 틀렸어요', right: '맞는 약 (알면: K-코드 또는 제품명)', send: '보내기', kept: r => (r.photos ? `사진은 ${r.days ? r.days + '일 동안' : '운영자가 지울 때까지'} 보관됩니다 (위치·기기 정보 없이)` : '답과 사진의 지문(해시)만 보관하고 사진은 보관하지 않습니다') + (r.reviewed ? '. 모든 보고는 사람이 검토한 뒤에만 쓰입니다.' : '.'),
       thanks: id => `감사합니다 — 보고 ${id}을(를) 저장했습니다.`,
       fix: '개수가 틀렸나요? 상자를 누르면 지워지고, 빠진 알약 위를 끌면(또는 그 알약이나 점선 상자를 누르면) 상자가 생깁니다: 알약을 다시 식별합니다.',
       topk: '후보 수', key_ph: 'API 키 (X-API-Key)', q_ph: '각인, 예: TQ 250', color_ph: '색: 노랑 / yellow', shape_ph: '모양: 원형 / round',
       name_ph: '제품명: 타이레놀 / Tylenol', form_ph: '제형: 필름코팅정 / 캡슐'}};
let answer = null, rid = null;  // the last answer and its request id, for a report that it is wrong
let reports = {photos: false, days: 0, reviewed: false};  // what a report keeps (/health): said before one is sent
let lang = (localStorage.getItem('pillsnap-lang') || navigator.language || 'en').startsWith('ko') ? 'ko' : 'en', photo = null, img = null, last = null;
const t = k => T[lang][k];
function applyLang() {
  document.documentElement.lang = lang;
  document.querySelectorAll('[data-t]').forEach(e => { if (!(e.id === 'results' && last)) e.textContent = t(e.dataset.t); });
  document.querySelectorAll('[data-tp]').forEach(e => { e.placeholder = t(e.dataset.tp); });  // the boxes' hints too
  $('lang').textContent = lang === 'en' ? '한국어' : 'English';
  if (last) last();
}
$('lang').onclick = () => { lang = lang === 'en' ? 'ko' : 'en'; localStorage.setItem('pillsnap-lang', lang); applyLang(); };
$('key').value = sessionStorage.getItem('pillsnap-key') || '';
$('drop').onclick = () => $('file').click();
$('drop').ondragover = e => { e.preventDefault(); $('drop').classList.add('over'); };
$('drop').ondragleave = () => $('drop').classList.remove('over');
$('drop').ondrop = e => { e.preventDefault(); $('drop').classList.remove('over'); if (e.dataTransfer.files[0]) choose(e.dataTransfer.files[0]); };
$('file').onchange = e => { if (e.target.files[0]) choose(e.target.files[0]); };
$('camera').onclick = () => $('shot').click();  // a phone opens its camera for this one (capture)
$('shot').onchange = e => { if (e.target.files[0]) choose(e.target.files[0]); };
function choose(f) {
  photo = f; img = new Image();
  img.onload = () => draw(null); img.src = URL.createObjectURL(f);
  $('go').disabled = false; $('status').textContent = f.name;
}
function esc(s) { return String(s ?? '').replace(/[&<>"']/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c])); }
function names(c) { return esc(c.dl_name || c.k_code) + (c.dl_name_en ? `<br><small>${esc(c.dl_name_en)}</small>` : ''); }
function words(p) { const s = t('sure'); return p >= 0.9 ? s[0] : p >= 0.6 ? s[1] : p >= 0.3 ? s[2] : s[3]; }
function colours(c) { return [c.color_class1, c.color_class2].filter(Boolean).join('/'); }
function links(c) {  // the official record and the reference image: links to follow, never fetched by the page
  const a = (u, k) => u && /^https?:\/\//.test(u) ? `<a href="${esc(u)}" target="_blank" rel="noopener noreferrer">${esc(t(k))}</a>` : '';
  return c.links ? [a(c.links.record, 'record'), a(c.links.image, 'image')].filter(Boolean).join('<br>') : '';
}
function draw(result) {
  const c = $('canvas'), scale = Math.min(1, 640 / img.width), editable = !!(result && result.sides !== 2);
  c.classList.toggle('edit', editable); $('fix').hidden = !editable;  // a count the user can correct
  c.width = img.width * scale; c.height = img.height * scale;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0, c.width, c.height);
  if (!result) return;
  g.lineWidth = 3; g.font = '13px system-ui';
  const taken = [];  // the labels drawn so far: pills side by side must not hide each other's
  result.pills.forEach((p, i) => {
    const off = p.expected === false && !p.line, top = off && p.best_match ? p.best_match : p.candidates[0];  // not prescribed (nor placed by the tray's check): what it looks like
    const [x1, y1, x2, y2] = p.box.map(v => v * scale);
    const name = lang === 'ko' ? top.dl_name || top.dl_name_en : top.dl_name_en || top.dl_name;
    const label = p.status === 'unknown' ? '?' : p.status === 'not sure' ? `? ${(p.between || []).slice(0, 2).join(' / ')}` : `${off ? '✗ ' : ''}${name || top.k_code} ${(top.confidence * 100).toFixed(0)}%`;
    g.strokeStyle = p.status === 'unknown' || off ? '#d93025' : p.status === 'not sure' ? '#f2c200' : '#ff8c00'; g.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const txt = `${i + 1}. ${label}`;
    const w = g.measureText(txt).width + 8, [lx, ly] = spot(taken, [x1, y1, x2, y2], w, 18, c.width, c.height);
    g.fillStyle = g.strokeStyle; g.fillRect(lx, ly, w, 18);
    g.fillStyle = '#000'; g.fillText(txt, lx + 4, ly + 13);
  });
  ((result.count_doubt || {}).maybe_missed || []).forEach(b => {  // the count in doubt: boxes maybe missed, dashed; a tap counts one
    const [x1, y1, x2, y2] = b.map(v => v * scale);
    g.save(); g.setLineDash([6, 4]); g.lineWidth = 2; g.strokeStyle = '#1a73e8'; g.strokeRect(x1, y1, x2 - x1, y2 - y1); g.restore();
    const [lx, ly] = spot(taken, [x1, y1, x2, y2], 18, 18, c.width, c.height);
    g.fillStyle = '#1a73e8'; g.fillRect(lx, ly, 18, 18); g.fillStyle = '#fff'; g.fillText('?', lx + 5, ly + 13);
  });
}
// Where a w×h label goes by its box: above it, inside its top, below it, inside its bottom — the first spot inside
// the canvas and clear of the labels in `taken` (above it, kept inside, in a heap where none is); added to `taken`.
function spot(taken, [x1, y1, x2, y2], w, h, W, H) {
  const x = Math.min(Math.max(0, x1), Math.max(0, W - w));
  const free = y => y >= 0 && y + h <= H && !taken.some(([a, b, aw, ah]) => x < a + aw && a < x + w && y < b + ah && b < y + h);
  const y = [y1 - h, y1, y2, y2 - h].find(free) ?? Math.max(0, y1 - h);
  taken.push([x, y, w, h]); return [x, y];
}
// A 'not sure' pill: the drugs it could be, what tells them apart (their records' fields that differ) and what to do —
// in single mode, when one side's marks differ, the other side's photo in one tap (the same as #addback).
function notSure(p, i, r) {
  if (p.status !== 'not sure') return '';
  const unit = (f, v) => ['leng_long', 'leng_short', 'thick'].includes(f) && v ? `${v} mm` : (v || '—');
  const apart = Object.entries(p.differ || {}).slice(0, 2).map(([f, vs]) => `${t('fields')[f] || f} ${vs.map(v => unit(f, v)).join(t('vs'))}`);
  const tap = p.advice === 'other_side' && r.mode === 'single' && r.sides !== 2 ? ` <button type="button" class="second turnover">${esc(t('back'))}</button>` : '';
  const refs = p.advice === 'unrecorded' ? `<div class="refs" data-codes="${esc((p.between || []).join('\n'))}"></div>` : '';
  return `<p class="notsure">${esc(t('notsure')((p.between || []).join(', ')))}</p><p class="advice">${esc(t(p.advice || 'none'))}` +
    (apart.length ? ` — ${esc(t('differ'))} ${esc(apart.join('; '))}` : '') + `${tap}</p>${refs}`;
}
// Beside a 'not sure' whose drugs have no record of their looks: each candidate's enrolment photo, where the gallery
// keeps one (GET drugs/{code}/photo, with the key; a drug without one shows nothing).
function refPhotos() {
  document.querySelectorAll('#results .refs').forEach(div => div.dataset.codes.split('\n').filter(Boolean).forEach(async code => {
    const res = await fetch(`drugs/${encodeURIComponent(code)}/photo`, {headers: keyHeader()}).catch(() => null);
    if (!res || !res.ok) return;
    const fig = document.createElement('figure'), im = document.createElement('img'), cap = document.createElement('figcaption');
    im.src = URL.createObjectURL(await res.blob()); im.alt = cap.textContent = code;
    fig.append(im, cap); div.append(fig);
  }));
}
function checklist(c) {
  const item = (ok, text) => `<li class="${ok ? 'ok' : 'unknown'}">${ok ? '✓' : '✗'} ${esc(text)}</li>`;
  return `<div class="check"><p><b>${esc(t('checkword'))}</b> ${esc(lang === 'ko' ? c.verdict_ko : c.verdict)}</p><ul>` +
    c.lines.map(l => item(l.found === l.expected, `${l.line} — ${t('of')(l.found, l.expected)}${l.pills.length ? ` (${t('pill')} ${l.pills.join(', ')})` : ''}`)).join('') +
    (c.extra.length ? item(false, t('left')(c.extra.join(', '))) : '') +
    (Object.keys(c.unchecked).length ? item(false, t('unchecked')(Object.keys(c.unchecked).join(', '))) : '') + '</ul></div>';
}
function show(r) {
  const rows = p => p.candidates.map((c, j) => `<tr><td>${j + 1}</td><td>${esc(c.k_code)}</td><td>${names(c)}</td>
    <td>${words(c.confidence)} <small>${(c.confidence * 100).toFixed(1)}%</small>${c.in_set ? ' <span class="inset" title="candidate set">✓</span>' : ''}</td>
    <td>${esc(c.dl_company)}</td><td>${esc([c.print_front, c.print_back].filter(Boolean).join(' / '))}</td><td>${esc(c.drug_shape)}</td><td>${esc(colours(c))}</td>
    <td>${esc((c.edi_codes || []).join(', '))}</td><td>${links(c)}</td></tr>`).join('');
  const verdict = (p, i) => (p.status === 'unknown' ? `<p class="unknown">${esc(t('unknown'))}</p>` : '') + notSure(p, i, r) +
    (p.imprint_read ? `<p class="read">${esc(t('read')(p.imprint_read))}</p>` : '') +
    (p.expected === true || p.line ? `<p class="ok">✓ ${esc(t('expected'))}</p>` : p.expected === false ? `<p class="unknown">✗ ${esc(t('unexpected')(p.best_match && p.status !== 'unknown' ? (p.best_match.dl_name || p.best_match.k_code) : ''))}</p>` : '');  // the tray's check placed it: prescribed
  let h = `<p><b>${esc(t('mode')(r.mode))}</b>${r.sides === 2 ? ' (' + esc(t('sides')) + ')' : ''} — ${esc(t('pills')(r.pills.length))}, ${r.timing_ms.total.toFixed(0)} ms</p>`;
  if (r.mode === 'single' && r.sides !== 2) h += `<p><button type="button" id="addback" class="second">${esc(t('back'))}</button></p>`;
  const hint = k => (lang === 'ko' && r.hints.ko && r.hints.ko[k]) || r.hints[k];  // the server's hints, in both languages
  if (r.hints.combo_recommended) h += `<p class="hint">${esc(hint('reason'))}</p>`;
  if (r.hints.photo_warning) h += `<p class="hint">${esc(hint('photo_warning'))}</p>`;
  if (r.hints.pills_left) h += `<p class="hint">${esc(hint('pills_left'))}</p>`;  // public mode's bound
  if (r.hints.busy) h += `<p class="hint">${esc(hint('busy'))}</p>`;  // a busy service's lighter reading
  if (r.hints.unlike) h += `<p class="hint">${esc(hint('unlike'))}</p>`;  // single mode's pill check: why it is unknown
  ['missed', 'odd'].forEach(k => { if (r.hints[k]) h += `<p class="hint doubt">${esc(hint(k))}</p>`; });  // the count in doubt
  if (r.prescription && r.prescription.unmatched.length) h += `<p class="hint">${esc(t('unmatched')(r.prescription.unmatched.join(', ')))}</p>`;
  if (r.check) h += checklist(r.check);  // the tray against its prescription: one line per prescribed drug
  const wrong = i => `<p class="fb" data-i="${i}"><button type="button" class="second wrong">${esc(t('wrong'))}</button></p>`;
  h += r.pills.map((p, i) => `<div class="pill"><h3><canvas class="thumb" width="72" height="72" data-i="${i}"></canvas>${esc(t('pill'))} ${i + 1}</h3>${verdict(p, i)}${wrong(i)}<table><tr><th>#</th><th>K-code</th><th>${t('name')}</th>
    <th>${t('confidence')}</th><th>${t('company')}</th><th>${t('imprint')}</th><th>${t('shape')}</th><th>${t('colour')}</th><th>EDI</th><th>${t('links')}</th></tr>${rows(p)}</table></div>`).join('');
  if (r.pills.some(p => p.candidates.some(c => c.in_set !== undefined))) h += `<p class="note"><span class="inset">✓</span> ${esc(t('inset'))}</p>`;
  $('results').innerHTML = h;
  refPhotos();
  document.querySelectorAll('#results canvas.thumb').forEach(c => {  // each pill's crop, square, from the photo as chosen
    const [x1, y1, x2, y2] = r.pills[+c.dataset.i].box, s = Math.max(x2 - x1, y2 - y1, 1);
    if (img && img.complete) c.getContext('2d').drawImage(img, x1 + (x2 - x1 - s) / 2, y1 + (y2 - y1 - s) / 2, s, s, 0, 0, 72, 72);
  });
}
function showSearch(found) {
  $('results').innerHTML = `<p><b>${esc(t('found')(found.length))}</b></p><table><tr><th>#</th><th>K-code</th><th>${t('name')}</th><th>${t('score')}</th>
    <th>${t('imprint')}</th><th>${t('shape')}</th><th>${t('colour')}</th><th>${t('company')}</th></tr>` + found.map((c, j) => `<tr><td>${j + 1}</td><td>${esc(c.k_code)}</td>
    <td>${names(c)}</td><td>${c.score.toFixed(2)}</td><td>${esc([c.print_front, c.print_back].filter(Boolean).join(' / '))}</td><td>${esc(c.drug_shape)}</td>
    <td>${esc(colours(c))}</td><td>${esc(c.dl_company)}</td></tr>`).join('') + '</table>';
}
function keyHeader() {
  const key = $('key').value.trim();
  if ($('remember').checked) sessionStorage.setItem('pillsnap-key', key); else sessionStorage.removeItem('pillsnap-key');
  return key ? {'X-API-Key': key} : {};
}
fetch('health').then(r => r.json()).then(h => { $('keyrow').hidden = !!h.public; reports = h.reports || reports; }).catch(() => {});  // public mode: no key to ask for
function said(r) {  // a refusal in the user's language: the server sends both (detail, detail_ko) with a code
  if (lang === 'ko' && r.detail_ko) return r.detail_ko;
  return typeof r.detail === 'string' ? r.detail : JSON.stringify(r.detail);
}
async function call(url, opts, render) {
  $('status').textContent = t('identifying'); $('status').className = '';
  try {
    const res = await fetch(url, opts), r = await res.json();
    if (!res.ok) throw new Error(`${res.status}: ${said(r)}`);
    const id = res.headers.get('X-Request-ID');
    last = () => { render(r); $('status').textContent = t('done')(id); };
    if (r.pills) { answer = r; rid = id; }
    last();
  } catch (e) { $('status').textContent = e.message; $('status').className = 'err'; }
}
$('go').onclick = () => identify(null);
$('find').onclick = () => {
  const q = new URLSearchParams({q: $('q').value.trim(), top: '10'});
  if ($('color').value.trim()) q.set('color', $('color').value.trim());
  if ($('shape').value.trim()) q.set('shape', $('shape').value.trim());
  if ($('sname').value.trim()) q.set('name', $('sname').value.trim());
  if ($('form').value.trim()) q.set('form', $('form').value.trim());
  call(`search?${q}`, {headers: keyHeader()}, r => showSearch(r.results));
};
async function identify(back) {  // the chosen photo (and, for one pill, its other side) in the chosen mode
  const mode = back ? 'single' : document.querySelector('input[name=mode]:checked').value, body = new FormData();
  body.append('image', photo);
  if (back) body.append('back', back);
  if ($('expect').value.trim()) body.append('expect', $('expect').value.trim());
  $('go').disabled = true;
  await call(`predict?pipeline=${mode}&top_k=${encodeURIComponent($('topk').value)}`, {method: 'POST', headers: keyHeader(), body}, r => { draw(r); show(r); });
  $('go').disabled = false;
}
// A count the user corrects on the drawing: a tap on a box takes it off, a drag (or a tap where no box is) adds one; then
// the photo is asked again with the boxes left and the new one (`boxes`): the server identifies each and recounts.
let press = null, asking = false;  // where the pointer went down (client px), and whether a recount is on its way
function inPhoto(x, y) {  // a point of the page (client px) in the photo's own pixels
  const c = $('canvas'), r = c.getBoundingClientRect(), s = Math.min(1, 640 / img.width);
  return [(x - r.left) * c.width / r.width / s, (y - r.top) * c.height / r.height / s];
}
function fitBox([x1, y1, x2, y2]) {  // a box kept inside the photo, at least 2 px each way, to 0.1 px
  const W = img.width, H = img.height, c = (v, m) => Math.round(Math.min(Math.max(v, 0), m) * 10) / 10;
  const a = [c(Math.min(x1, x2), W - 2), c(Math.min(y1, y2), H - 2)];
  return [...a, c(Math.max(x1, x2, a[0] + 2), W), c(Math.max(y1, y2, a[1] + 2), H)];
}
function corrected(boxes, [x0, y0], [x1, y1], dragged, maybe = []) {  // the boxes after one tap or drag
  if (dragged) return [...boxes, fitBox([x0, y0, x1, y1])];
  const area = b => (b[2] - b[0]) * (b[3] - b[1]), on = b => b[0] <= x1 && x1 <= b[2] && b[1] <= y1 && y1 <= b[3];
  const hit = boxes.map((b, i) => [i, b]).filter(([, b]) => on(b));
  if (hit.length) { const i = hit.sort((a, b) => area(a[1]) - area(b[1]))[0][0]; return boxes.filter((_, j) => j !== i); }
  const dashed = maybe.filter(on).sort((a, b) => area(a) - area(b))[0];  // a box maybe missed: counted as drawn
  if (dashed) return [...boxes, fitBox(dashed)];
  const sides = boxes.map(b => Math.sqrt(area(b))).sort((a, b) => a - b);  // a missed pill: sized like the others
  const half = (sides.length ? sides[sides.length >> 1] : Math.min(img.width, img.height) / 8) / 2;
  return [...boxes, fitBox([x1 - half, y1 - half, x1 + half, y1 + half])];
}
$('canvas').onpointerdown = e => { if (!asking && answer && answer.sides !== 2) { press = [e.clientX, e.clientY]; e.preventDefault(); } };
$('canvas').onpointerup = async e => {
  if (!press) return;
  const dragged = Math.hypot(e.clientX - press[0], e.clientY - press[1]) > 10;  // CSS px: a finger's tap wobbles less
  const boxes = corrected(answer.pills.map(p => p.box), inPhoto(...press), inPhoto(e.clientX, e.clientY), dragged,
                          (answer.count_doubt || {}).maybe_missed);
  press = null; asking = true;
  const body = new FormData();
  body.append('image', photo); body.append('boxes', JSON.stringify(boxes));
  if ($('expect').value.trim()) body.append('expect', $('expect').value.trim());
  await call(`predict?pipeline=combo&top_k=${encodeURIComponent($('topk').value)}`, {method: 'POST', headers: keyHeader(), body}, r => { draw(r); show(r); });
  asking = false;
};
$('backfile').onchange = e => { if (e.target.files[0]) identify(e.target.files[0]); };
$('results').onclick = async e => {
  if (e.target.id === 'addback' || e.target.classList.contains('turnover')) return $('backfile').click();  // a phone offers its camera for the other side  // "this answer is wrong": the right drug if known, then a report with the photo
  const box = e.target.closest('.fb');
  if (!box || !answer) return;
  if (e.target.classList.contains('wrong')) {
    box.innerHTML = `<input class="right" type="text" autocomplete="off" placeholder="${esc(t('right'))}"> <button type="button" class="send">${esc(t('send'))}</button>` +
      `<small class="kept">${esc(t('kept')(reports))}</small>`;
    return;
  }
  if (!e.target.classList.contains('send')) return;
  const i = +box.dataset.i, p = answer.pills[i], body = new FormData();
  body.append('image', photo); body.append('answered', p.status === 'unknown' ? 'unknown' : p.candidates[0].k_code);
  body.append('pipeline', answer.mode); body.append('pill', i); body.append('box', p.box.map(v => v.toFixed(1)).join(','));
  if (rid) body.append('request_id', rid);
  const right = box.querySelector('.right').value.trim();
  if (right) body.append('right', right);
  e.target.disabled = true;
  try {
    const res = await fetch('feedback', {method: 'POST', headers: keyHeader(), body}), r = await res.json();
    if (!res.ok) throw new Error(`${res.status}: ${said(r)}`);
    box.textContent = t('thanks')(r.id);
  } catch (err) { box.textContent = err.message; box.className = 'fb err'; }
};
applyLang();
