#!/usr/bin/env python3
"""Fails when a crate's modules import each other in a ring.

Usage: scripts/module-cycles.py CRATE_SRC_DIR...  Reads `crate::` and `super::`
paths (outside comments and test modules) and reports every strongly connected
set of two or more modules.
"""
import re,glob,sys
import os

def check(root):
    os.chdir(root)
    files=glob.glob('**/*.rs',recursive=True)
    names={p[:-3].replace('/mod','').replace('/','::'):p for p in files}
    mods={}
    for m,p in names.items():
        if m in('lib','main'): continue
        s=open(p).read()
        s=re.sub(r'#\[cfg\(test\)\]\s*mod tests \{.*','',s,flags=re.S)
        s=re.sub(r'//[^\n]*','',s)
        deps=set()
        paths = re.findall(r'crate::((?:[a-z_0-9]+::)*[a-z_0-9]+)', s)
        for prefix, group in re.findall(r'crate::((?:[a-z_0-9]+::)*)\{([^}]*)\}', s):
            paths += [prefix + g.strip().split('::')[0] for g in group.split(',') if g.strip()]
        for u in paths:
            parts=u.split('::')
            for k in range(len(parts),0,-1):
                c='::'.join(parts[:k])
                if c in names: deps.add(c);break
        base=m.split('::')[:-1]
        for u in re.findall(r'super::([a-z_0-9]+)',s):
            c='::'.join(base+[u])
            if c in names: deps.add(c)
        mods[m]=deps-{m}-{x for x in deps if m.startswith(x+'::')}
    idx={};low={};st=[];on=set();res=[];c=[0]
    sys.setrecursionlimit(10000)
    def sc(v):
        idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
        for w in mods.get(v,()):
            if w not in mods: continue
            if w not in idx: sc(w); low[v]=min(low[v],low[w])
            elif w in on: low[v]=min(low[v],idx[w])
        if low[v]==idx[v]:
            comp=[]
            while True:
                w=st.pop();on.discard(w);comp.append(w)
                if w==v:break
            if len(comp)>1: res.append(comp)
    for v in list(mods):
        if v not in idx: sc(v)
    return res


bad = False
for root in [os.path.abspath(r) for r in sys.argv[1:]]:
    cycles = check(root)
    for ring in cycles:
        bad = True
        print(f"{root}: modules import each other in a ring: {' -> '.join(sorted(ring))}")
sys.exit(1 if bad else 0)
