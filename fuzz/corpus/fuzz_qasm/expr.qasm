OPENQASM 2.0;
include "qelib1.inc";
gate g(a, b) x, y {
  rz(a*2 - b/2) x;
  u3(sin(a), cos(b)^2, -(a+b)) y;
  cu1(sqrt(4)*ln(exp(a)) + tan(0)) x, y;
  U(a, 2^-1, -b) x;
  CX y, x;
}
qreg q[2]; qreg r[2];
g(pi/3, .7e0) q[1], q[0];
cx q, r;
rzz(1.5) q[0], r;
