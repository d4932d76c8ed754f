OPENQASM 2.0;
include "qelib1.inc";
gate rzx(param0) q0,q1 { h q1; cx q0,q1; rz(param0) q1; cx q0,q1; h q1; }
gate ecr q0,q1 { rzx(pi/4) q0,q1; x q0; rzx(-pi/4) q0,q1; }
gate r(param0,param1) q0 { u3(param0,param1 - pi/2,-param1 + pi/2) q0; }
opaque magic(a) b;
qreg q[3];
creg meas[3];
h q[0];
ecr q[0],q[1];
r(pi/2,pi/4) q[2];
sxdg q[1];
rccx q[0],q[1],q[2];
barrier q[0],q[1],q[2];
measure q -> meas;
