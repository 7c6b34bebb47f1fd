"""Real output of Grid Engine 8.1.9 captured from benchhub/cluster:dev containers (manager
clusterdev-mgr, members clusterdev-m1..m3 with static_cores=3, static_mem=3G), used by
test_cluster_sge_xml.py. Kept verbatim: the parsers must read what qstat and qhost print.
"""

# qstat -xml -u '*' -s p -r: a job asking for more cores than a member has, an smp job,
# a held job and an array job with a step
PENDING = """\
<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>1</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>true</JB_name>
      <JB_owner>jovyan</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-11-21T13:49:58</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
      <full_job_name>true</full_job_name>
      <hard_request name="static_cores" resource_contribution="0.000000">8</hard_request>
      <binding>NONE</binding>
    </job_list>
    <job_list state="pending">
      <JB_job_number>2</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>sleep</JB_name>
      <JB_owner>jovyan</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-11-21T13:49:58</JB_submission_time>
      <queue_name></queue_name>
      <slots>2</slots>
      <full_job_name>sleep</full_job_name>
      <requested_pe name="smp">2</requested_pe>
      <hard_request name="static_mem" resource_contribution="0.000000">1G</hard_request>
      <binding>NONE</binding>
    </job_list>
    <job_list state="pending">
      <JB_job_number>3</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>true</JB_name>
      <JB_owner>jovyan</JB_owner>
      <state>hqw</state>
      <JB_submission_time>2026-11-21T13:49:58</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
      <full_job_name>true</full_job_name>
      <binding>NONE</binding>
    </job_list>
    <job_list state="pending">
      <JB_job_number>4</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>sleep</JB_name>
      <JB_owner>jovyan</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-11-21T13:49:58</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
      <tasks>1-10:3</tasks>
      <full_job_name>sleep</full_job_name>
      <hard_request name="static_mem" resource_contribution="0.000000">512M</hard_request>
      <hard_request name="static_cores" resource_contribution="0.000000">2</hard_request>
      <binding>NONE</binding>
    </job_list>
  </job_info>
</job_info>
"""

# the same a minute later: job 6 failed to start (Eqw), job 3 still held
PENDING_ERROR = """\
<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>1</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>true</JB_name>
      <JB_owner>jovyan</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-11-21T13:49:58</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
      <full_job_name>true</full_job_name>
      <hard_request name="static_cores" resource_contribution="0.000000">8</hard_request>
      <binding>NONE</binding>
    </job_list>
    <job_list state="pending">
      <JB_job_number>6</JB_job_number>
      <JAT_prio>0.25000</JAT_prio>
      <JB_name>true</JB_name>
      <JB_owner>jovyan</JB_owner>
      <state>Eqw</state>
      <JB_submission_time>2026-11-21T13:52:49</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
      <full_job_name>true</full_job_name>
      <binding>NONE</binding>
    </job_list>
    <job_list state="pending">
      <JB_job_number>3</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>true</JB_name>
      <JB_owner>jovyan</JB_owner>
      <state>hqw</state>
      <JB_submission_time>2026-11-21T13:49:58</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
      <full_job_name>true</full_job_name>
      <binding>NONE</binding>
    </job_list>
  </job_info>
</job_info>
"""

# qhost -xml -F static_cores,static_mem: two members running jobs
QHOST_BUSY = """\
<?xml version='1.0'?>
<qhost xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qhost/qhost.xsd">
 <host name='global'>
   <hostvalue name='arch_string'>-</hostvalue>
   <hostvalue name='num_proc'>-</hostvalue>
   <hostvalue name='m_socket'>-</hostvalue>
   <hostvalue name='m_core'>-</hostvalue>
   <hostvalue name='m_thread'>-</hostvalue>
   <hostvalue name='load_avg'>-</hostvalue>
   <hostvalue name='mem_total'>-</hostvalue>
   <hostvalue name='mem_used'>-</hostvalue>
   <hostvalue name='swap_total'>-</hostvalue>
   <hostvalue name='swap_used'>-</hostvalue>
 </host>
 <host name='clusterdev-m1'>
   <hostvalue name='arch_string'>lx-amd64</hostvalue>
   <hostvalue name='num_proc'>2</hostvalue>
   <hostvalue name='m_socket'>1</hostvalue>
   <hostvalue name='m_core'>2</hostvalue>
   <hostvalue name='m_thread'>2</hostvalue>
   <hostvalue name='load_avg'>0.52</hostvalue>
   <hostvalue name='mem_total'>23.5G</hostvalue>
   <hostvalue name='mem_used'>763.9M</hostvalue>
   <hostvalue name='swap_total'>0.0</hostvalue>
   <hostvalue name='swap_used'>0.0</hostvalue>
   <resourcevalue name='static_cores' dominance='hc'>1.000000</resourcevalue>
   <resourcevalue name='static_mem' dominance='hc'>1.000G</resourcevalue>
 </host>
 <host name='clusterdev-m2'>
   <hostvalue name='arch_string'>lx-amd64</hostvalue>
   <hostvalue name='num_proc'>2</hostvalue>
   <hostvalue name='m_socket'>1</hostvalue>
   <hostvalue name='m_core'>2</hostvalue>
   <hostvalue name='m_thread'>2</hostvalue>
   <hostvalue name='load_avg'>0.52</hostvalue>
   <hostvalue name='mem_total'>23.5G</hostvalue>
   <hostvalue name='mem_used'>794.8M</hostvalue>
   <hostvalue name='swap_total'>0.0</hostvalue>
   <hostvalue name='swap_used'>0.0</hostvalue>
   <resourcevalue name='static_cores' dominance='hc'>1.000000</resourcevalue>
   <resourcevalue name='static_mem' dominance='hc'>2.500G</resourcevalue>
 </host>
</qhost>
"""

# qstat -f -xml -u '*' -q all.q -s rs: the same members, m2 drained (qmod -d)
QSTAT_BUSY = """\
<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <Queue-List>
      <name>all.q@clusterdev-m1</name>
      <qtype>BIP</qtype>
      <slots_used>2</slots_used>
      <slots_resv>0</slots_resv>
      <slots_total>9999</slots_total>
      <load_avg>0.49805</load_avg>
      <arch>lx-amd64</arch>
      <job_list state="running">
        <JB_job_number>2</JB_job_number>
        <JAT_prio>0.75000</JAT_prio>
        <JB_name>sleep</JB_name>
        <JB_owner>jovyan</JB_owner>
        <state>r</state>
        <JAT_start_time>2026-11-21T13:49:59</JAT_start_time>
        <slots>2</slots>
      </job_list>
    </Queue-List>
    <Queue-List>
      <name>all.q@clusterdev-m2</name>
      <qtype>BIP</qtype>
      <slots_used>1</slots_used>
      <slots_resv>0</slots_resv>
      <slots_total>9999</slots_total>
      <load_avg>0.49805</load_avg>
      <arch>lx-amd64</arch>
      <state>d</state>
      <job_list state="running">
        <JB_job_number>4</JB_job_number>
        <JAT_prio>0.25000</JAT_prio>
        <JB_name>sleep</JB_name>
        <JB_owner>jovyan</JB_owner>
        <state>r</state>
        <JAT_start_time>2026-11-21T13:50:06</JAT_start_time>
        <slots>1</slots>
        <tasks>4</tasks>
      </job_list>
    </Queue-List>
  </queue_info>
  <job_info>
  </job_info>
</job_info>
"""

# qhost: m1 lost (container stopped 2 minutes ago), m2 drained, m3 added but not started
QHOST_JOINING = """\
<?xml version='1.0'?>
<qhost xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qhost/qhost.xsd">
 <host name='global'>
   <hostvalue name='arch_string'>-</hostvalue>
   <hostvalue name='num_proc'>-</hostvalue>
   <hostvalue name='m_socket'>-</hostvalue>
   <hostvalue name='m_core'>-</hostvalue>
   <hostvalue name='m_thread'>-</hostvalue>
   <hostvalue name='load_avg'>-</hostvalue>
   <hostvalue name='mem_total'>-</hostvalue>
   <hostvalue name='mem_used'>-</hostvalue>
   <hostvalue name='swap_total'>-</hostvalue>
   <hostvalue name='swap_used'>-</hostvalue>
 </host>
 <host name='clusterdev-m1'>
   <hostvalue name='arch_string'>lx-amd64</hostvalue>
   <hostvalue name='num_proc'>2</hostvalue>
   <hostvalue name='m_socket'>1</hostvalue>
   <hostvalue name='m_core'>2</hostvalue>
   <hostvalue name='m_thread'>2</hostvalue>
   <hostvalue name='load_avg'>-</hostvalue>
   <hostvalue name='mem_total'>23.5G</hostvalue>
   <hostvalue name='mem_used'>-</hostvalue>
   <hostvalue name='swap_total'>0.0</hostvalue>
   <hostvalue name='swap_used'>-</hostvalue>
   <resourcevalue name='static_cores' dominance='hc'>3.000000</resourcevalue>
   <resourcevalue name='static_mem' dominance='hc'>3.000G</resourcevalue>
 </host>
 <host name='clusterdev-m2'>
   <hostvalue name='arch_string'>lx-amd64</hostvalue>
   <hostvalue name='num_proc'>2</hostvalue>
   <hostvalue name='m_socket'>1</hostvalue>
   <hostvalue name='m_core'>2</hostvalue>
   <hostvalue name='m_thread'>2</hostvalue>
   <hostvalue name='load_avg'>0.88</hostvalue>
   <hostvalue name='mem_total'>23.5G</hostvalue>
   <hostvalue name='mem_used'>742.9M</hostvalue>
   <hostvalue name='swap_total'>0.0</hostvalue>
   <hostvalue name='swap_used'>0.0</hostvalue>
   <resourcevalue name='static_cores' dominance='hc'>3.000000</resourcevalue>
   <resourcevalue name='static_mem' dominance='hc'>3.000G</resourcevalue>
 </host>
 <host name='clusterdev-m3'>
   <hostvalue name='arch_string'>-</hostvalue>
   <hostvalue name='num_proc'>-</hostvalue>
   <hostvalue name='m_socket'>-</hostvalue>
   <hostvalue name='m_core'>-</hostvalue>
   <hostvalue name='m_thread'>-</hostvalue>
   <hostvalue name='load_avg'>-</hostvalue>
   <hostvalue name='mem_total'>-</hostvalue>
   <hostvalue name='mem_used'>-</hostvalue>
   <hostvalue name='swap_total'>-</hostvalue>
   <hostvalue name='swap_used'>-</hostvalue>
   <resourcevalue name='static_cores' dominance='hc'>3.000000</resourcevalue>
   <resourcevalue name='static_mem' dominance='hc'>3.000G</resourcevalue>
 </host>
</qhost>
"""

# qstat -f for the same moment
QSTAT_JOINING = """\
<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <Queue-List>
      <name>all.q@clusterdev-m1</name>
      <qtype>BIP</qtype>
      <slots_used>0</slots_used>
      <slots_resv>0</slots_resv>
      <slots_total>9999</slots_total>
      <arch>lx-amd64</arch>
      <state>u</state>
    </Queue-List>
    <Queue-List>
      <name>all.q@clusterdev-m2</name>
      <qtype>BIP</qtype>
      <slots_used>0</slots_used>
      <slots_resv>0</slots_resv>
      <slots_total>9999</slots_total>
      <load_avg>0.87647</load_avg>
      <arch>lx-amd64</arch>
      <state>d</state>
    </Queue-List>
    <Queue-List>
      <name>all.q@clusterdev-m3</name>
      <qtype>BIP</qtype>
      <slots_used>0</slots_used>
      <slots_resv>0</slots_resv>
      <slots_total>9999</slots_total>
      <state>u</state>
    </Queue-List>
  </queue_info>
  <job_info>
  </job_info>
</job_info>
"""
