/* SPDX-License-Identifier: MIT */
/* The page served at "/": connects to the server and shows every event of
 * this connection (this user).  Kept tiny and dependency-free on purpose.
 * On connect it runs echo("page loaded"), or the run given in the URL:
 * /?run=AGENT&input=TEXT (used by browser-check.sh). */
#ifndef UREG_AGENT_PAGE_H
#define UREG_AGENT_PAGE_H
static const char agent_page_html[] =
"<!doctype html>\n"
"<html><head><meta charset=\"utf-8\"><title>ureg agent server</title>\n"
"<style>body{font:14px monospace;margin:1em}#log{border:1px solid #999;height:60vh;"
"overflow:auto;padding:4px;white-space:pre}.error{color:#b00}.completed{color:#070}</style>\n"
"</head><body>\n"
"<h3>ureg agent server</h3>\n"
"<div>status: <b id=\"status\">connecting</b> &middot; you are <b id=\"user\">?</b>"
" &middot; events: <b id=\"count\">0</b></div>\n"
"<p><select id=\"agent\"><option>echo</option><option>fail</option></select>\n"
"<input id=\"input\" value=\"hello\" size=\"40\"> <button id=\"run\">run</button></p>\n"
"<div id=\"log\"></div>\n"
"<script>\n"
"var n=0, log=document.getElementById('log');\n"
"var ws=new WebSocket((location.protocol==='https:'?'wss://':'ws://')+location.host+'/','ureg-agents');\n"
"function line(cls,t){var d=document.createElement('div');d.className=cls;d.textContent=t;"
"log.appendChild(d);log.scrollTop=log.scrollHeight;}\n"
"var q=new URLSearchParams(location.search);\n"
"if(q.get('run')){document.getElementById('agent').value=q.get('run');"
"document.getElementById('input').value=q.get('input')||'';}\n"
"ws.onopen=function(){document.getElementById('status').textContent='connected';"
"ws.send(JSON.stringify(q.get('run')?{run:q.get('run'),input:q.get('input')||''}"
":{run:'echo',input:'page loaded'}));};\n"
"ws.onclose=function(){document.getElementById('status').textContent='closed';};\n"
"ws.onmessage=function(m){var e=JSON.parse(m.data);n++;"
"document.getElementById('count').textContent=n;"
"if(e.user)document.getElementById('user').textContent=e.user;"
"line(e.ev,'#'+e.seq+' '+(e.agent||'-')+' '+e.ev+' '+JSON.stringify(e.data||e.error||''));};\n"
"document.getElementById('run').onclick=function(){ws.send(JSON.stringify({run:"
"document.getElementById('agent').value,input:document.getElementById('input').value}));};\n"
"</script></body></html>\n";
#endif
