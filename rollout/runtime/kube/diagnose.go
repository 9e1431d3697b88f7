package kube

import (
	"fmt"
	"github.com/sluicehq/sluice/rollout/reason"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/sluicehq/sluice/rollout/runtime"
)

// diagnose names the reason a rollout is failing, from the state of the
// Deployment and of the pods of the generation being started, or returns nil
// when nothing has failed yet. Before the deadline (final false) it reports
// only what will not heal by waiting: an image pull backing off, a container
// crash-looping, pods the ReplicaSet may not create, or the Deployment's own
// progress deadline. At the deadline (final true) it always returns a
// reason: the one above, else unschedulable pods, else a readiness probe
// that failed (HealthCheckFailed: the app answered, but not 2xx) or never got
// an answer (HealthCheckTimeout).
func diagnose(st state, final bool) *runtime.Failure {
	d := st.deployment
	if f := podFailure(st.pods, final); f != nil {
		return f
	}
	if c := condition(d, appsv1.DeploymentReplicaFailure); c != nil && c.Status == corev1.ConditionTrue {
		return &runtime.Failure{Code: reason.StartFailed,
			Detail:     fmt.Sprintf("the cluster refused to create the pods (%s): %s", c.Reason, c.Message),
			Suggestion: "Check the namespace's resource quotas, limit ranges and admission policies, or lower instances/resources in sluice.yaml."}
	}
	if c := condition(d, appsv1.DeploymentProgressing); c != nil && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
		final = true
	}
	if !final {
		return nil
	}
	for _, p := range st.pods {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return &runtime.Failure{Code: reason.Unschedulable,
					Detail:     fmt.Sprintf("pod %s could not be placed on any node: %s", p.Name, c.Message),
					Suggestion: "Lower the version's resource requests or instances, or add capacity to the cluster."}
			}
		}
	}
	var probe []string
	answered := false
	for _, e := range st.events {
		probe = append(probe, e.Message)
		if strings.Contains(e.Message, "statuscode") {
			answered = true
		}
	}
	tail := strings.Join(lastN(probe, 3), "\n")
	switch {
	case answered:
		return &runtime.Failure{Code: reason.HealthCheckFailed,
			Detail:     "the readiness probe answered, but never with 2xx, before the start timeout:\n" + tail,
			Suggestion: "Make the health path of sluice.yaml answer 2xx once the app is ready, or point health at a path that does."}
	case len(probe) > 0:
		return &runtime.Failure{Code: reason.HealthCheckTimeout,
			Detail:     "the readiness probe never got an answer before the start timeout:\n" + tail,
			Suggestion: "Make the app listen on $PORT, or raise timeouts.start in sluice.yaml if it needs longer to start."}
	case len(st.pods) == 0:
		return &runtime.Failure{Code: reason.HealthCheckTimeout,
			Detail:     fmt.Sprintf("no pod of this version was created before the start timeout (Deployment status: %d/%d available)", d.Status.AvailableReplicas, replicasOf(d)),
			Suggestion: "Check the cluster with kubectl describe deployment " + d.Name + " (is the controller manager running?)."}
	}
	return &runtime.Failure{Code: reason.HealthCheckTimeout,
		Detail:     fmt.Sprintf("the pods did not become ready before the start timeout (%d/%d available)", d.Status.AvailableReplicas, replicasOf(d)),
		Suggestion: "Make the app listen on $PORT and answer the health path with 2xx, or raise timeouts.start in sluice.yaml."}
}

// podFailure finds a container that cannot start: an image that cannot be
// pulled or a container that keeps exiting. ErrImagePull and
// CreateContainerConfigError count only at the deadline, since the first may
// be a registry hiccup and the second a Secret written a moment after the
// Deployment.
func podFailure(pods []corev1.Pod, final bool) *runtime.Failure {
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			w := cs.State.Waiting
			if w == nil {
				continue
			}
			switch {
			case w.Reason == "ImagePullBackOff" || w.Reason == "InvalidImageName" || final && w.Reason == "ErrImagePull":
				return &runtime.Failure{Code: reason.ImagePullFailed,
					Detail:     fmt.Sprintf("pod %s cannot pull image %s (%s): %s", p.Name, cs.Image, w.Reason, w.Message),
					Suggestion: "Check that the image was pushed for this commit and that the cluster may pull it (imagePullSecrets); the image comes from kubernetes.image in sluice.yaml."}
			case w.Reason == "CrashLoopBackOff":
				detail := fmt.Sprintf("container %s of pod %s keeps exiting (restarted %d times)", cs.Name, p.Name, cs.RestartCount)
				if t := cs.LastTerminationState.Terminated; t != nil {
					detail += fmt.Sprintf("; last exit code %d (%s)", t.ExitCode, t.Reason)
					if t.Message != "" {
						detail += ":\n" + t.Message
					}
				}
				return &runtime.Failure{Code: reason.ProcessExited, Detail: detail,
					Suggestion: "Run the image locally with PORT set to see why it exits; the output above is the end of its last run."}
			case final && w.Reason == "CreateContainerConfigError":
				return &runtime.Failure{Code: reason.StartFailed,
					Detail:     fmt.Sprintf("pod %s cannot start its container: %s", p.Name, w.Message),
					Suggestion: "Check the version's Secret and configuration with kubectl describe pod " + p.Name + "."}
			}
		}
	}
	return nil
}

func condition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

func replicasOf(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

func lastN(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
