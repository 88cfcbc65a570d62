(function(){
const D=JSON.parse(document.getElementById('tcu-timeline-data').textContent);
const box=document.getElementById('tcu-timeline');
const cv=document.createElement('canvas');box.appendChild(cv);
const tip=document.createElement('div');tip.className='tcu-tip';box.appendChild(tip);
const ctx=cv.getContext('2d');
const L=150,R=60,AX=28;
const OUT={allowed:'#2e7d32',allowed_with_warnings:'#ef6c00',refused:'#c62828',not_needed:'#9e9e9e'};
const ST={complete:'#2e7d32',done:'#2e7d32',completed:'#2e7d32',refused:'#c62828',failed:'#c62828',
 interrupted:'#c62828',aborted:'#c62828',not_needed:'#9e9e9e',cancelled:'#9e9e9e',stopped:'#616161'};
const LINK={home:'#a5d6a7',roaming:'#ffcc80',unregistered:'#ef9a9a'};
const ENUM=['#e0e0e0','#90caf9','#a5d6a7','#ffcc80','#ce93d8','#ef9a9a'];
const COL=['#1565c0','#c62828','#2e7d32','#ef6c00','#6a1b9a','#00838f','#5d4037'];
const LANES=['charging','preconditioning','lock'];
const lane=s=>(s==='lock'||s==='unlock')?'lock':s;
const start=D.start,end=Math.max(D.end,D.start+1e-3)+Math.max(1,(D.end-D.start)*0.03);
let x0=start,x1=end;
const hv=/^#t=(-?[\d.]+),(-?[\d.]+)$/.exec(location.hash);
if(hv&&+hv[2]>+hv[1]){x0=+hv[1];x1=+hv[2];}
const rows=[];const groups={};const states=[];
for(const s of D.signals){if(s.kind==='float'){(groups[s.unit]=groups[s.unit]||[]).push(s);}else states.push(s);}
const MARKS=D.marks||[];if(MARKS.length)rows.push({kind:'marks',title:'steps',h:34});
for(const u in groups)rows.push({kind:'num',title:u.replace('celsius','°C').replace('percent','%'),series:groups[u],h:110});
if(states.length)rows.push({kind:'states',title:'',series:states,h:20*states.length+10});
rows.push({kind:'sessions',title:'sessions',h:70});
rows.push({kind:'verdicts',title:'verdicts',h:90});
rows.push({kind:'link',title:'SIM',h:30});
rows.push({kind:'tel',title:'outbox / records',h:90});
let H=AX+8;for(const r of rows){r.y=H;H+=r.h+8;}
const hits=[];
function W(){return cv.width/(window.devicePixelRatio||1);}
function X(t){return L+(t-x0)/(x1-x0)*(W()-L-R);}
function T(px){return x0+(px-L)/(W()-L-R)*(x1-x0);}
function lo(a,t){let l=0,h=a.length;while(l<h){const m=(l+h)>>1;if(a[m]<t)l=m+1;else h=m;}return l;}
function fmt(t){if(D.clock){const d=new Date((D.origin_epoch+t)*1000);return d.toISOString().substr(11,8);}
 const s=Math.round(Math.abs(t));return (t<0?'-':'')+Math.floor(s/3600)+':'+String(Math.floor(s/60)%60).padStart(2,'0')+':'+String(s%60).padStart(2,'0');}
function steps(s){const t=s.t,v=s.v,out=[];if(!t.length)return out;
 const w=W();let i=Math.max(0,lo(t,x0)-1);const n=t.length;let col=null;
 for(;i<n;i++){const px=Math.floor(X(t[i]));const val=v[i];
  if(col&&col.px===px){if(val!==null){col.lo=Math.min(col.lo,val);col.hi=Math.max(col.hi,val);}col.last=val;}
  else{if(col)out.push(col);col={px:Math.max(L,px),first:val,lo:val===null?Infinity:val,hi:val===null?-Infinity:val,last:val};}
  if(px>w)break;}
 if(col)out.push(col);return out;}
function numRow(r){let mn=Infinity,mx=-Infinity;
 for(const s of r.series)for(const v of s.v)if(v!==null){mn=Math.min(mn,v);mx=Math.max(mx,v);}
 if(mn===Infinity){mn=0;mx=1;}if(mx-mn<1e-9){mn-=1;mx+=1;}const pad=(mx-mn)*0.08;mn-=pad;mx+=pad;
 const Y=v=>r.y+r.h-(v-mn)/(mx-mn)*r.h;let k=0;
 ctx.fillStyle='#666';ctx.font='10px sans-serif';ctx.fillText(mx.toFixed(1),L-40,r.y+10);ctx.fillText(mn.toFixed(1),L-40,r.y+r.h);
 for(const s of r.series){const c=COL[k++%COL.length];ctx.strokeStyle=c;ctx.lineWidth=1.2;ctx.beginPath();
  let prev=null;for(const col of steps(s)){
   if(col.first===null){prev=null;continue;}
   const px=col.px;if(prev!==null){ctx.lineTo(px,Y(prev));}else ctx.moveTo(px,Y(col.first));
   ctx.lineTo(px,Y(col.first));if(col.lo<=col.hi){ctx.moveTo(px,Y(col.lo));ctx.lineTo(px,Y(col.hi));ctx.moveTo(px,Y(col.last===null?col.first:col.last));}
   prev=col.last;if(prev===null){ctx.stroke();ctx.beginPath();}}
  if(prev!==null)ctx.lineTo(W()-R,Y(prev));ctx.stroke();
  ctx.fillStyle=c;ctx.fillText(s.label,L+6+(k-1)*140,r.y+10);}
 return r.series.length;}
function segs(s){const out=[];const t=s.t,v=s.v;for(let i=0;i<t.length;i++){const a=t[i],b=i+1<t.length?t[i+1]:end;
 if(b<=a||v[i]===null)continue;const o=out[out.length-1];if(o&&o.v===v[i]&&o.b===a)o.b=b;else out.push({a:a,b:b,v:v[i]});}return out;}
function statesRow(r){r.series.forEach((s,i)=>{const y=r.y+i*20+3;ctx.fillStyle='#333';ctx.font='11px sans-serif';
 ctx.fillText(s.label,4,y+12);
 for(const g of segs(s)){if(g.b<x0||g.a>x1)continue;const a=Math.max(L,X(g.a)),b=Math.min(W()-R,X(g.b));
  if(s.kind==='bool'){if(g.v<0.5)continue;ctx.fillStyle='#1565c0';ctx.fillRect(a,y,Math.max(1,b-a),14);}
  else{ctx.fillStyle=ENUM[g.v%ENUM.length];ctx.fillRect(a,y,Math.max(1,b-a),14);const txt=s.values[g.v];
   if(b-a>ctx.measureText(txt).width+4){ctx.fillStyle='#222';ctx.fillText(txt,a+2,y+11);}
   hits.push({x:a,x2:b,y:y,y2:y+14,text:s.label+': '+txt+'\n'+fmt(g.a)+' - '+fmt(g.b)});}}});}
function sessionsRow(r){let n=0;const lastEnd={};LANES.forEach((l,i)=>{ctx.fillStyle='#333';ctx.font='11px sans-serif';ctx.fillText(l,4,r.y+i*22+14);});
 for(const s of D.sessions){if(s.end<x0||s.start>x1)continue;n++;const i=LANES.indexOf(lane(s.service));const y=r.y+i*22+4;
  const a=Math.max(L,X(s.start)),b=Math.max(a+2,Math.min(W()-R,X(s.end)));const c=ST[s.state]||'#1565c0';
  ctx.globalAlpha=0.45;ctx.fillStyle=c;ctx.fillRect(a,y,b-a,14);ctx.globalAlpha=1;
  if(s.active!==null){const aa=Math.max(L,X(s.active));ctx.fillRect(aa,y,Math.max(2,b-aa),14);}
  const txt=s.session_id+' '+s.state;const tw=ctx.measureText(txt).width;
  if(a>=(lastEnd[i]||0)){ctx.fillStyle='#222';lbl(txt,a-5,y+11);lastEnd[i]=a+tw+6;}
  hits.push({x:a,x2:b,y:y,y2:y+14,text:s.session_id+': '+s.states.map(q=>fmt(q[0])+' '+q[1]).join('\n')+(s.reason?'\nreason: '+s.reason:'')});}
 return n;}
function vtext(v){let c=v.reasons.join(', ');if(v.warnings.length)c=(c?c+' / ':'')+v.warnings.join(', ');const o=v.outcome.replace(/_/g,' ');return c?o+': '+c:o;}
const SEV={refused:0,allowed_with_warnings:1,allowed:2,not_needed:3};
function verdictsRow(r){LANES.forEach((l,i)=>{ctx.fillStyle='#333';ctx.font='11px sans-serif';ctx.fillText(l,4,r.y+i*28+18);});
 const groups=[];const last={};
 for(const v of D.verdicts){if(v.t<x0||v.t>x1)continue;const i=LANES.indexOf(lane(v.service));const px=X(v.t);
  const g=last[i];ctx.font='10px sans-serif';
  if(g&&px<g.end){g.items.push(v);continue;}
  const ng={i:i,px:px,items:[v],end:px+ctx.measureText(vtext(v)).width+40};groups.push(ng);last[i]=ng;}
 for(const g of groups){const v=g.items.reduce((a,b)=>SEV[b.outcome]<SEV[a.outcome]?b:a);const y=r.y+g.i*28+14;ctx.fillStyle=OUT[v.outcome]||'#000';
  ctx.beginPath();ctx.arc(g.px,y,5,0,7);ctx.fill();
  ctx.font='10px sans-serif';lbl(vtext(v)+(g.items.length>1?' (+'+(g.items.length-1)+' more)':''),g.px,y-3);
  hits.push({x:g.px-6,x2:g.px+6,y:y-6,y2:y+6,text:g.items.map(q=>fmt(q.t)+' '+q.service+' '+vtext(q)+(q.messages.length?'\n  '+q.messages.join('\n  '):'')).join('\n')});}
 return groups.length;}
function linkRow(r){let n=0;for(const s of D.link){if(s.end<x0||s.start>x1)continue;n++;
  const k=!s.registered?'unregistered':(s.roaming?'roaming':'home');const a=Math.max(L,X(s.start)),b=Math.min(W()-R,X(s.end));
  ctx.fillStyle=LINK[k];ctx.fillRect(a,r.y,Math.max(1,b-a),r.h);const txt=s.registered?(s.plmn+' '+(s.operator||'')):s.state;
  ctx.font='11px sans-serif';if(b-a>ctx.measureText(txt).width+4){ctx.fillStyle='#222';ctx.fillText(txt,a+2,r.y+19);}
  hits.push({x:a,x2:b,y:r.y,y2:r.y+r.h,text:k+' '+(s.plmn||'')+' '+(s.operator||'')+' '+(s.country||'')+'\n'+fmt(s.start)+' - '+fmt(s.end)});}
 ctx.fillStyle='#333';ctx.fillText('SIM link',4,r.y+19);return n;}
function telRow(r){const keys=['outbox_depth','stored','sent','acked'];const c=['#6a1b9a','#9e9e9e','#1565c0','#2e7d32'];
 keys.forEach((k,j)=>{const s=D.telemetry[k];let mx=1;for(const v of s.v)if(v!==null)mx=Math.max(mx,v);
  const Y=v=>r.y+r.h-v/mx*r.h;ctx.strokeStyle=c[j];ctx.beginPath();let prev=null;
  for(const col of steps(s)){if(prev!==null)ctx.lineTo(col.px,Y(prev));else ctx.moveTo(col.px,Y(col.first));ctx.lineTo(col.px,Y(col.hi));prev=col.last;}
  if(prev!==null)ctx.lineTo(W()-R,Y(prev));ctx.stroke();ctx.fillStyle=c[j];ctx.font='10px sans-serif';
  ctx.fillText((k==='outbox_depth'?'outbox depth':'records '+k)+' (max '+mx+')',L+6+j*150,r.y+10);});
 ctx.fillStyle='#333';ctx.fillText('telemetry',4,r.y+14);}
function lbl(txt,px,y){const tw=ctx.measureText(txt).width;ctx.fillText(txt,px+7+tw>W()-2?px-7-tw:px+7,y);}
function marksRow(r){let n=0,lastEnd=-1;ctx.font='10px sans-serif';ctx.fillStyle='#333';ctx.fillText('steps',4,r.y+14);
 for(const m of MARKS){if(m.t<x0||m.t>x1)continue;n++;const px=X(m.t);ctx.fillStyle=m.bad?'#c62828':'#555';
  ctx.fillRect(px-1,r.y+18,2,r.h-18);const tw=ctx.measureText(m.text).width;
  if(px>lastEnd||m.bad){lbl(m.text,px,r.y+12);lastEnd=px+tw+8;}
  hits.push({x:px-4,x2:px+4,y:r.y,y2:r.y+r.h,text:fmt(m.t)+' '+(m.detail||m.text)});}
 return n;}
function axis(){const span=x1-x0;const want=span/10;const nice=[1,2,5,10,15,30,60,120,300,600,900,1800,3600,7200,10800,21600,43200,86400];
 let step=nice[nice.length-1];for(const s of nice)if(s>=want){step=s;break;}if(want<1)step=Math.pow(10,Math.ceil(Math.log10(want)));
 const base=D.clock?D.origin_epoch:0;ctx.fillStyle='#333';ctx.font='11px sans-serif';ctx.strokeStyle='#eee';
 for(let a=Math.ceil((x0+base)/step)*step-base;a<=x1;a+=step){const px=X(a);ctx.beginPath();ctx.moveTo(px,AX);ctx.lineTo(px,H);ctx.stroke();
  ctx.fillText(fmt(a),px-22,AX-8);}
 ctx.fillText(D.clock?'UTC':'vehicle time',4,AX-8);}
function draw(){const dpr=window.devicePixelRatio||1;const w=box.clientWidth||1200;cv.width=w*dpr;cv.height=H*dpr;
 cv.style.width=w+'px';cv.style.height=H+'px';ctx.setTransform(dpr,0,0,dpr,0,0);ctx.clearRect(0,0,w,H);hits.length=0;
 axis();const counts={rows:rows.length,lines:0,sessions:0,verdict_markers:0,link_segments:0,view:[x0,x1]};
 for(const r of rows){ctx.save();ctx.beginPath();ctx.rect(0,r.y-2,w,r.h+4);ctx.clip();
  ctx.fillStyle='#fafafa';ctx.fillRect(L,r.y,w-L-R,r.h);
  if(r.kind==='num'){counts.lines+=numRow(r);ctx.fillStyle='#333';ctx.font='11px sans-serif';ctx.fillText(r.title,4,r.y+14);}
  else if(r.kind==='states')statesRow(r);else if(r.kind==='sessions')counts.sessions=sessionsRow(r);
  else if(r.kind==='marks')counts.marks=marksRow(r);else if(r.kind==='verdicts')counts.verdict_markers=verdictsRow(r);else if(r.kind==='link')counts.link_segments=linkRow(r);else telRow(r);
  ctx.restore();}
 ctx.fillStyle='rgba(120,120,120,0.22)';for(const s of D.link){if(s.registered||s.end<x0||s.start>x1)continue;
  const a=Math.max(L,X(s.start)),b=Math.min(w-R,X(s.end));ctx.fillRect(a,AX,Math.max(1,b-a),H-AX);}
 ctx.strokeStyle='rgba(198,40,40,0.6)';for(const m of MARKS){if(!m.bad||m.t<x0||m.t>x1)continue;ctx.beginPath();ctx.moveTo(X(m.t),AX);ctx.lineTo(X(m.t),H);ctx.stroke();}
 ctx.strokeStyle='#6d4c41';ctx.setLineDash([4,3]);for(const t of D.boots){if(t<x0||t>x1)continue;ctx.beginPath();ctx.moveTo(X(t),AX);ctx.lineTo(X(t),H);ctx.stroke();}
 ctx.setLineDash([]);document.body.dataset.rendered=JSON.stringify(counts);}
let drag=null;
cv.addEventListener('wheel',e=>{e.preventDefault();const t=T(e.offsetX);const f=e.deltaY>0?1.25:0.8;
 let n0=t-(t-x0)*f,n1=t+(x1-t)*f;if(n1-n0<0.5){return;}if(n1-n0>end-start){n0=start;n1=end;}x0=n0;x1=n1;draw();},{passive:false});
cv.addEventListener('mousedown',e=>{drag={x:e.offsetX,a:x0,b:x1};});
window.addEventListener('mouseup',()=>{drag=null;});
cv.addEventListener('mousemove',e=>{if(drag){const dt=(e.offsetX-drag.x)/(W()-L-R)*(drag.b-drag.a);x0=drag.a-dt;x1=drag.b-dt;draw();return;}
 const h=hits.find(q=>e.offsetX>=q.x&&e.offsetX<=q.x2&&e.offsetY>=q.y&&e.offsetY<=q.y2);
 if(h){tip.textContent=h.text;tip.style.display='block';tip.style.left=Math.min(e.offsetX+12,W()-320)+'px';tip.style.top=(e.offsetY+12)+'px';}
 else tip.style.display='none';});
cv.addEventListener('dblclick',()=>{x0=start;x1=end;draw();});
window.addEventListener('resize',draw);
draw();
})();
