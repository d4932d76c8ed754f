OPENQASM 2.0;
include "qelib1.inc";
gate g0 a { x a; x a; }
gate g1 a { g0 a; g0 a; }
gate g2 a { g1 a; g1 a; }
qreg q[1];
g2 q[0];
