# dslaunch: hostfiles, resource selection, plan, protocol and supervisor (unit);
# launches on this host (integration); launches over real sshd hosts (ssh).
ds_add_test(launcher_unit_test LABELS unit
  SOURCES hostfile_test.cpp launcher_plan_test.cpp launcher_supervisor_test.cpp
  LIBS ds_launcher)
ds_add_test(launcher_local_test LABELS integration SOURCES launcher_local_test.cpp)
add_dependencies(launcher_local_test dslaunch dsworker)
ds_add_test(ssh_launch_test LABELS ssh SOURCES ssh_launch_test.cpp)
add_dependencies(ssh_launch_test dslaunch dsworker)
